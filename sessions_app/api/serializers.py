"""Serializers of the REST API."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sessions_app.access import role_in_session
from sessions_app.jobs import allowed_models
from sessions_app.models import BatchJob, TranscriptionSession, Utterance
from sessions_app.recordings import session_recordings
from stt_engine.languages import AUTO, normalize_language


def checked_language(value: str) -> str:
    """``"auto"`` (also for an empty value) or a Whisper language code, else a validation error."""
    language = normalize_language(value.strip() or AUTO)
    if language is None:
        raise serializers.ValidationError(
            'Use "auto" or one of Whisper\'s language codes such as "en" or "de".', code="BAD_LANGUAGE"
        )
    return language


class BatchJobSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_name", read_only=True)
    transcript_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchJob
        fields = [
            "id", "status", "progress", "original_filename", "size_bytes", "language", "detected_language",
            "model", "diarize", "audio_duration_s", "error_code", "error_message", "created_at", "started_at",
            "heartbeat_at", "finished_at", "transcript_url", "page_url",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_transcript_url(self, job: BatchJob) -> str | None:
        if job.status != BatchJob.Status.DONE:
            return None
        return reverse("api-job-transcript", args=[job.pk])

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="The job's transcript page (done jobs)."))
    def get_page_url(self, job: BatchJob) -> str | None:
        if job.status != BatchJob.Status.DONE:
            return None
        return reverse("job-transcript", args=[job.pk])


class BatchJobCreateSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, allow_empty_file=True, help_text="The audio file (any common format).")
    language = serializers.CharField(required=False, default="auto", max_length=12)
    model = serializers.ChoiceField(choices=[], required=False)
    diarize = serializers.BooleanField(
        required=False,
        default=False,
        help_text='Label each segment with its speaker ("speaker_label": "S1", "S2", ...; exports say "Speaker 1").',
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = allowed_models()

    def validate_language(self, value: str) -> str:
        return checked_language(value)


class SessionSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    role = serializers.SerializerMethodField()
    share_token = serializers.SerializerMethodField()

    class Meta:
        model = TranscriptionSession
        fields = [
            "id", "title", "language", "status", "owner", "role", "share_token", "created_at", "ended_at",
            "transcript_state", "refine_progress", "refine_error_code", "room_microphone",
        ]  # fmt: skip
        read_only_fields = [f for f in fields if f not in ("title", "language", "room_microphone")]
        extra_kwargs = {
            "room_microphone": {
                "help_text": "One microphone for several people: its streams are diarized (lines carry "
                'speaker_label "S1", "S2", ...) unless a stream\'s stt_start says "diarize": false.'
            }
        }

    def _user(self):
        request = self.context.get("request")
        return request.user if request else None

    def validate_language(self, value: str) -> str:
        return checked_language(value)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_role(self, session: TranscriptionSession) -> str | None:
        user = self._user()
        return role_in_session(user, session) if user else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_share_token(self, session: TranscriptionSession) -> str | None:
        user = self._user()
        return session.share_token if user is not None and session.owner_id == user.pk else None


class RecordingSerializer(serializers.Serializer):
    """One speaker's recording of a session (a 16-bit mono WAV file)."""

    id = serializers.IntegerField(read_only=True)
    speaker = serializers.CharField(read_only=True, help_text="The speaker's username.")
    speaker_id = serializers.IntegerField(read_only=True)
    speaker_name = serializers.CharField(read_only=True, help_text="The speaker's display name in the session.")
    duration_s = serializers.FloatField(read_only=True, help_text="As on disk now (it grows while they speak).")
    sample_rate = serializers.IntegerField(read_only=True)
    bytes = serializers.IntegerField(read_only=True, help_text="Size of the WAV file, header included.")
    audio_url = serializers.CharField(read_only=True, help_text="The WAV file (Range requests supported).")


class SessionDetailSerializer(SessionSerializer):
    """A session with its recordings (``GET /api/sessions/{id}/``)."""

    recordings = serializers.SerializerMethodField()

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "recordings"]
        read_only_fields = [*SessionSerializer.Meta.read_only_fields, "recordings"]

    @extend_schema_field(RecordingSerializer(many=True))
    def get_recordings(self, session: TranscriptionSession) -> list[dict]:
        request = self.context.get("request")
        rows = []
        for row in session_recordings(session):
            path = reverse("api-session-recording-audio", args=[session.pk, row["id"]])
            rows.append({**row, "audio_url": request.build_absolute_uri(path) if request is not None else path})
        return RecordingSerializer(rows, many=True).data


class UtteranceSerializer(serializers.ModelSerializer):
    speaker = serializers.CharField(source="speaker.get_username", read_only=True)
    speaker_name = serializers.CharField(read_only=True, help_text="The speaker's display name in the session.")
    corrected_by = serializers.SerializerMethodField()

    class Meta:
        model = Utterance
        fields = [
            "id", "sequence", "speaker", "speaker_id", "speaker_name", "speaker_label", "start_s", "end_s", "text",
            "corrected_text", "display_text", "words", "language", "confidence", "model_name", "corrected_by",
            "corrected_at", "created_at", "source", "superseded_by", "spoken_at",
        ]  # fmt: skip
        read_only_fields = [f for f in fields if f != "corrected_text"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_corrected_by(self, utterance: Utterance) -> str | None:
        return utterance.corrected_by.get_username() if utterance.corrected_by_id else None


class UtteranceCorrectionSerializer(serializers.Serializer):
    corrected_text = serializers.CharField(allow_blank=True, trim_whitespace=True, max_length=20000)


class SpeakerSerializer(serializers.Serializer):
    """A speaker of a session: ``speaker`` is the username, ``speaker_name`` what pages and exports show."""

    speaker_id = serializers.IntegerField(read_only=True)
    speaker = serializers.CharField(source="username", read_only=True)
    speaker_name = serializers.CharField(source="name", read_only=True)
    display_name = serializers.CharField(read_only=True, help_text='What the owner set ("": the username).')
    colour = serializers.IntegerField(read_only=True, help_text="Index in the palette of 8 speaker colours.")
    role = serializers.CharField(read_only=True, help_text='"speaker", "viewer", or "" for a former member.')


class SpeakerRenameSerializer(serializers.Serializer):
    display_name = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=200, help_text='At most 80 characters; "" resets.'
    )


class JoinLinkSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()
    role = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    uses = serializers.IntegerField(read_only=True)

    @extend_schema_field(serializers.CharField())
    def get_url(self, link) -> str:
        path = reverse("session-join", args=[link.token])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    error = serializers.CharField()
