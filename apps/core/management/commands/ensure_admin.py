"""Create the local admin account on first run.

Username and password come from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD when set;
otherwise the username is 'admin' and a random password is generated and printed once.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the local admin account if no superuser exists yet."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Created admin account '{username}'"))
        if "DJANGO_SUPERUSER_PASSWORD" not in os.environ:
            self.stdout.write(f"  password: {password}   (shown once; change it in the admin)")
