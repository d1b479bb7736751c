"""Model signals: a membership deleted by any path (API, page, admin inline, a deleted user) is noticed."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from sessions_app.actions import notify_access_changed
from sessions_app.models import SessionMember


@receiver(post_delete, sender=SessionMember, dispatch_uid="session-member-deleted")
def membership_deleted(sender: type[SessionMember], instance: SessionMember, **kwargs: Any) -> None:
    """Open sockets of the session check their right again once the deletion commits.

    A cascade (a user or a session deleted in admin) sends this once per membership; the
    consumers treat a repeated notice as a no-op, so several in one transaction cost only reads.
    """
    notify_access_changed(instance.session_id)
