from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('generators', '0003_generator_options'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='holder',
            field=models.CharField(blank=True, max_length=255),
        ),
    ]
