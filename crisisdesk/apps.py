from django.apps import AppConfig


class CrisisDeskConfig(AppConfig):
    name = "crisisdesk"
    verbose_name = "CrisisDesk"

    def ready(self) -> None:
        from pathlib import Path

        from django.conf import settings

        # The local defaults keep their data (database, broker queue, mail) in var/.
        for folder in ("broker/queue", "broker/processed", "broker/control", "mail"):
            Path(settings.VAR_DIR, folder).mkdir(parents=True, exist_ok=True)
