from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ListeningConfig(AppConfig):
    name = "incidents.listening"
    label = "listening"
    verbose_name = _("Listening")

    def ready(self) -> None:
        # The reply deadlines' timers fire through the engine, which never imports us.
        from django.db.models.signals import post_delete, post_save

        from incidents import escalation
        from incidents.listening import inbox, rules, services
        from incidents.listening.models import ListeningRule
        from incidents.models import Timer
        from playbooks.models import Risk

        for kind in Timer.REPLY_KINDS:
            escalation.handler_register(kind, inbox.reply_timer_fire)
        # A firing exercise inject brings its sample comments into the inbox.
        escalation.inject_hook_register(services.drill_mentions_record)
        # The rules each process keeps for a few seconds are read again after a change.
        for model in (ListeningRule, Risk):
            for signal in (post_save, post_delete):
                signal.connect(rules.rules_forget, sender=model, dispatch_uid=f"rules-{model}")
