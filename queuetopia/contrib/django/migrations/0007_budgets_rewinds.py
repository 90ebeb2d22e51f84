from queuetopia.contrib.django.schema import version_migration

Migration = version_migration(__name__)
