from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sessions_app"
    verbose_name = "Transcription sessions"

    def ready(self) -> None:
        from sessions_app import signals  # noqa: F401  (connects the receivers)
