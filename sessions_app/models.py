"""The data model: sessions with members, utterances, per-speaker recordings and batch jobs."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Subquery
from django.utils import timezone


def new_share_token() -> str:
    return secrets.token_urlsafe(24)


class TranscriptionSession(models.Model):
    """A meeting: its members stream their microphones, viewers follow the captions."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    class TranscriptState(models.TextChoices):
        """Where the meeting record stands: live text, the post-session pass running, done, or failed."""

        LIVE = "live", "Live"
        REFINING = "refining", "Refining"
        FINAL = "final", "Final"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_sessions")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="SessionMember", related_name="transcription_sessions"
    )
    language = models.CharField(max_length=12, default="auto", help_text='"auto" detects the language.')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    share_token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    transcript_state = models.CharField(max_length=10, choices=TranscriptState.choices, default=TranscriptState.LIVE)
    refine_progress = models.PositiveSmallIntegerField(default=0, help_text="Post-session pass, 0 to 100.")
    refine_error_code = models.CharField(max_length=40, blank=True)
    refine_error = models.TextField(blank=True)
    refined_at = models.DateTimeField(null=True, blank=True, help_text="When the post-session pass finished.")
    streams_open = models.PositiveIntegerField(default=0, help_text="Live streams not yet finished (all servers).")
    last_stream_at = models.DateTimeField(null=True, blank=True, help_text="When a stream last started or ended.")
    room_microphone = models.BooleanField(
        default=False,
        help_text=(
            "One microphone for several people: streams are diarized and lines carry speaker labels (S1, S2, ...)."
        ),
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def close(self) -> None:
        if self.is_active:
            self.status = self.Status.CLOSED
            self.ended_at = timezone.now()
            self.save(update_fields=["status", "ended_at"])


SPEAKER_COLOURS = 8  # the palette's size (static/css/site.css and captions.css: .speaker-c0 to .speaker-c7)


class SessionMember(models.Model):
    """Membership with a role: speakers may stream and read, viewers may only read.

    ``display_name`` is what the session's pages and exports call the member (their username
    when empty); only the session's owner sets it. ``colour`` is the member's colour in the
    session's palette, given when they join (the first one no member has) and kept after that.
    """

    class Role(models.TextChoices):
        SPEAKER = "speaker", "Speaker"
        VIEWER = "viewer", "Viewer"

    session = models.ForeignKey(TranscriptionSession, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.SPEAKER)
    joined_at = models.DateTimeField(default=timezone.now)
    display_name = models.CharField(
        max_length=80, blank=True, help_text="The name pages and exports show for this member; empty: the username."
    )
    colour = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=f"Index in the session's palette of {SPEAKER_COLOURS} speaker colours."
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "user"], name="one_membership_per_user")]
        indexes = [models.Index(fields=["user", "role"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.session}"

    def save(self, *args, **kwargs) -> None:
        if self.colour is None:
            self.colour = next_colour(self.session_id)
        super().save(*args, **kwargs)


def next_colour(session_id) -> int:
    """The colour of a member who joins now: the first the session's members do not have, else round the palette.

    (Two members joining at the same instant may get the same one: a colour is only a reading aid.)
    """
    taken = set(SessionMember.objects.filter(session_id=session_id).values_list("colour", flat=True))
    free = [index for index in range(SPEAKER_COLOURS) if index not in taken]
    return free[0] if free else len(taken) % SPEAKER_COLOURS


class JoinLink(models.Model):
    """A link that makes whoever opens it (signed in) a speaker of the session, until its owner revokes it."""

    session = models.ForeignKey(TranscriptionSession, on_delete=models.CASCADE, related_name="join_links")
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    role = models.CharField(max_length=10, choices=SessionMember.Role.choices, default=SessionMember.Role.SPEAKER)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0, help_text="How many people joined through it.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["session", "revoked_at"])]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.role} link of {self.session} ({state})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UtteranceQuerySet(models.QuerySet):
    def current(self) -> UtteranceQuerySet:
        """The current transcript: the latest version of every utterance, in spoken order."""
        return self.filter(superseded_by__isnull=True).order_by("spoken_at", "start_s", "sequence")

    def with_speaker_names(self) -> UtteranceQuerySet:
        """Each row with its speaker's display name and colour in its session (``Utterance.speaker_name``,
        ``Utterance.speaker_colour``), in the same query."""
        membership = SessionMember.objects.filter(session_id=OuterRef("session_id"), user_id=OuterRef("speaker_id"))
        return self.annotate(
            member_display_name=Subquery(membership.values("display_name")[:1]),
            member_colour=Subquery(membership.values("colour")[:1]),
        )


class Utterance(models.Model):
    """One utterance of one speaker; times are on that speaker's recording clock.

    Every version is kept: a live final (``source=live``) is superseded by the refined decode
    of its turn (``refined``), and that by the post-session pass (``archive``). A superseded
    row points at the row that replaced it (``superseded_by``); the current transcript is the
    rows that point nowhere (``Utterance.objects.current()``).
    """

    class Source(models.TextChoices):
        LIVE = "live", "Live final"
        REFINED = "refined", "Refined turn"
        ARCHIVE = "archive", "Post-session pass"

    session = models.ForeignKey(TranscriptionSession, on_delete=models.CASCADE, related_name="utterances")
    speaker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="utterances")
    sequence = models.PositiveIntegerField(help_text="Order of arrival within the session.")
    start_s = models.FloatField()
    end_s = models.FloatField()
    text = models.TextField(help_text="What the engine heard; never edited.")
    words = models.JSONField(default=list, blank=True, help_text="[{word, start, end, probability}]")
    language = models.CharField(max_length=12, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    corrected_text = models.TextField(blank=True, help_text="A reviewer's correction; the original stays.")
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    corrected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.LIVE)
    stream_id = models.CharField(max_length=32, blank=True, help_text="The connection that streamed it.")
    speaker_label = models.CharField(
        max_length=16, blank=True, help_text="Who spoke on a room microphone (S1, S2, ...); empty when not diarized."
    )
    spoken_at = models.DateTimeField(
        null=True, blank=True, help_text="Wall-clock time its speech began; orders speakers against each other."
    )
    superseded_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supersedes",
        help_text="The later version that replaced this one; empty while it is current.",
    )
    superseded_at = models.DateTimeField(null=True, blank=True)

    objects = UtteranceQuerySet.as_manager()

    class Meta:
        ordering = ["session", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["session", "sequence"], name="unique_sequence_per_session"),
            models.CheckConstraint(condition=models.Q(end_s__gte=models.F("start_s")), name="end_after_start"),
        ]
        indexes = [
            models.Index(fields=["session", "start_s"]),
            models.Index(fields=["session", "speaker", "start_s"]),
            models.Index(fields=["session", "superseded_by", "spoken_at"]),
        ]

    def __str__(self) -> str:
        return self.display_text[:80]

    @property
    def is_current(self) -> bool:
        return self.superseded_by_id is None

    @property
    def display_text(self) -> str:
        return self.corrected_text or self.text

    @property
    def speaker_name(self) -> str:
        """The speaker's display name in the session (rows from ``with_speaker_names()``), else their username."""
        return getattr(self, "member_display_name", None) or self.speaker.get_username()

    @property
    def speaker_colour(self) -> int:
        """The speaker's colour in the session (rows from ``with_speaker_names()``); one from their id otherwise."""
        colour = getattr(self, "member_colour", None)
        return colour if colour is not None else self.speaker_id % SPEAKER_COLOURS

    def correct(self, text: str, by) -> None:
        self.corrected_text = text
        self.corrected_by = by
        self.corrected_at = timezone.now()
        self.save(update_fields=["corrected_text", "corrected_by", "corrected_at"])


class SpeakerLabelName(models.Model):
    """What a session calls one diarized voice of one stream speaker's room microphone.

    Without a row (or with an empty ``display_name``) the label ``S<n>`` reads "Speaker <n>";
    ``colour`` is the label's colour in the session's palette.
    """

    session = models.ForeignKey(TranscriptionSession, on_delete=models.CASCADE, related_name="speaker_label_names")
    speaker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=16)
    display_name = models.CharField(max_length=80, blank=True)
    colour = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=f"Index in the session's palette of {SPEAKER_COLOURS} speaker colours."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "speaker", "label"], name="one_name_per_speaker_label")
        ]

    def __str__(self) -> str:
        return f"{self.label} of {self.speaker} in {self.session}: {self.display_name or '-'}"


def recording_path(instance: AudioRecording, filename: str) -> str:
    return f"recordings/{instance.session_id}/{filename}"


class AudioRecording(models.Model):
    """A speaker's audio in a session: one WAV file that every stream of theirs appends to."""

    session = models.ForeignKey(TranscriptionSession, on_delete=models.CASCADE, related_name="recordings")
    speaker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recordings")
    file = models.FileField(upload_to=recording_path, max_length=300)
    sample_rate = models.PositiveIntegerField(default=16000)
    duration_s = models.FloatField(default=0.0)
    size_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "speaker"], name="one_recording_per_speaker")]

    def __str__(self) -> str:
        return f"{self.speaker} in {self.session} ({self.duration_s:.1f} s)"


def upload_path(instance: BatchJob, filename: str) -> str:
    return f"uploads/{instance.owner_id}/{instance.id}/{filename}"


class BatchJob(models.Model):
    """A file uploaded over REST and transcribed by a Celery worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batch_jobs")
    upload = models.FileField(upload_to=upload_path, max_length=300)
    original_filename = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="0 to 100")
    language = models.CharField(max_length=12, default="auto")
    detected_language = models.CharField(max_length=12, blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    prompt = models.TextField(blank=True, help_text="Text that comes before the audio (names, spellings).")
    temperature = models.FloatField(default=0.0, help_text="First decoding temperature, 0 to 1.")
    diarize = models.BooleanField(default=False, help_text="Label each segment with its speaker (S1, S2, ...).")
    audio_duration_s = models.FloatField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    segments = models.JSONField(default=list, blank=True, help_text="[{start, end, text, words, speaker_label?}]")
    corrected_text = models.TextField(blank=True, help_text="A reviewer's correction; the segments stay.")
    task_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last progress report of the worker.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.original_filename or self.id} ({self.status})"
