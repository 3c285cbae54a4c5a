"""python manage.py check_storage [--repair] [--grace 1d] [--json]

Walks the database and the file storage (a folder or an S3 bucket) and prints where they disagree: rows whose
files are missing, and stored files no row names, with their size and age. Exit status: 0 when they agree, 1
when they do not (also after --repair: it reports what it found, then what it changed), 2 when the storage
cannot be reached, or when --repair finds most rows' files missing (another storage than the database's, e.g. a
folder not mounted: nothing is changed unless --force).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.upkeep.presentation import report_lines
from apps.upkeep.repair import DEFAULT_GRACE
from apps.upkeep.services import check_storage

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_grace(text: str) -> timedelta:
    """ "1d", "12h", "30m", "90s" or plain seconds."""
    match = _SPAN.match(text.lower())
    if not match:
        raise CommandError(f"--grace {text!r}: give a time like 1d, 12h, 30m or 90s.")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class Command(BaseCommand):
    help = (
        "Compare the database with the file storage: rows whose files are missing, and files no row names. "
        "Exit status 0: they agree; 1: they do not; 2: the storage cannot be reached, or --repair refused."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Remove orphans older than --grace and mark the rows whose files are missing (a generator "
            "whose weights are gone becomes 'broken: weights missing').",
        )
        parser.add_argument(
            "--grace",
            default=None,
            help="Orphans younger than this are never removed: they may be work in flight (default 1d).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Repair even when most rows' files are missing (otherwise refused: it looks like another storage).",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON, for scripts.")

    def handle(self, *args, **options):
        grace = parse_grace(options["grace"]) if options["grace"] else DEFAULT_GRACE
        outcome = check_storage(repair_it=options["repair"], grace=grace, force=options["force"])
        if options["json"]:
            self.stdout.write(json.dumps(outcome.as_json(), indent=2))
        elif outcome.findings is None:
            self.stderr.write(f"check_storage: {outcome.record.error} Nothing was changed.")
        else:
            self.stdout.write("\n".join(report_lines(outcome.findings, outcome.repairs, grace)))
        if outcome.findings is not None and outcome.record.error and not options["json"]:
            self.stderr.write(outcome.record.error)
        if outcome.findings is None or outcome.record.error:
            sys.exit(2)
        if not outcome.findings.clean:
            sys.exit(1)
