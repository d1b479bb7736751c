"""Who may see or do what. Every view, consumer and API endpoint asks here.

``access_*`` functions fetch a row with the permission check built in; a row the user may
not see is reported as missing (404), so ids of other people's data leak nothing.
"""

from __future__ import annotations

import secrets

from django.db.models import Q, QuerySet
from django.http import Http404

from sessions_app.models import AudioRecording, BatchJob, SessionMember, TranscriptionSession


def sessions_visible_to(user) -> QuerySet[TranscriptionSession]:
    if not user.is_authenticated:
        return TranscriptionSession.objects.none()
    return TranscriptionSession.objects.filter(Q(owner=user) | Q(memberships__user=user)).distinct()


def role_in_session(user, session: TranscriptionSession) -> str | None:
    """``"speaker"``, ``"viewer"`` or None. The owner is always a speaker."""
    if not user.is_authenticated:
        return None
    if session.owner_id == user.pk:
        return SessionMember.Role.SPEAKER
    membership = SessionMember.objects.filter(session=session, user=user).only("role").first()
    return membership.role if membership else None


def can_stream(user, session: TranscriptionSession) -> bool:
    return session.is_active and role_in_session(user, session) == SessionMember.Role.SPEAKER


def can_view(user, session: TranscriptionSession, share_token: str | None = None) -> bool:
    # (compare_digest refuses str with non-ASCII characters: bytes compare any token)
    if share_token and secrets.compare_digest(share_token.encode(), session.share_token.encode()):
        return True
    return role_in_session(user, session) is not None


def access_session(user, session_id) -> TranscriptionSession:
    session = sessions_visible_to(user).filter(pk=session_id).first() if _is_uuid_like(session_id) else None
    if session is None:
        raise Http404("No such session.")
    return session


def access_session_as_owner(user, session_id) -> TranscriptionSession:
    session = access_session(user, session_id)
    if session.owner_id != user.pk:
        raise Http404("No such session.")
    return session


def access_recording(user, recording_id: int) -> AudioRecording:
    recording = AudioRecording.objects.select_related("session").filter(pk=recording_id).first()
    if recording is None or not (user.is_staff or role_in_session(user, recording.session)):
        raise Http404("No such recording.")
    return recording


def jobs_visible_to(user) -> QuerySet[BatchJob]:
    if not user.is_authenticated:
        return BatchJob.objects.none()
    return BatchJob.objects.filter(owner=user)


def access_job(user, job_id) -> BatchJob:
    job = BatchJob.objects.filter(pk=job_id).first() if _is_uuid_like(job_id) else None
    if job is None or not (job.owner_id == user.pk or user.is_staff):
        raise Http404("No such job.")
    return job


def _is_uuid_like(value) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
