"""wayview.backup: online backups of a deployment and restores into a new one (docs/backup.md)."""

from __future__ import annotations

from wayview.backup.create import BackupReport, create_backup
from wayview.backup.manifest import BackupDamaged
from wayview.backup.restore import RestoreReport, restore_backup

__all__ = ["BackupDamaged", "BackupReport", "RestoreReport", "create_backup", "restore_backup"]
