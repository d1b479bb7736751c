"""Admin for reviewers: search, filter, listen and correct (the original text is always kept)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from sessions_app.actions import do_rotate_share_token, notify_access_changed
from sessions_app.meeting_record.post_session import end_session
from sessions_app.models import AudioRecording, BatchJob, SessionMember, TranscriptionSession, Utterance


def _audio_player(url: str | None):
    if not url:
        return "-"
    return format_html('<audio controls preload="none" src="{}"></audio>', url)


class SessionMemberInline(admin.TabularInline):
    model = SessionMember
    extra = 0
    autocomplete_fields = ["user"]


class UtteranceInline(admin.TabularInline):
    """Every version of every utterance: the current transcript first (in spoken order), then the rest."""

    model = Utterance
    fk_name = "session"
    extra = 0
    fields = ["sequence", "speaker", "start_s", "end_s", "text", "corrected_text", "confidence", "source",
              "superseded_by"]  # fmt: skip
    readonly_fields = ["sequence", "speaker", "start_s", "end_s", "text", "confidence", "source", "superseded_by"]
    show_change_link = True

    def get_queryset(self, request):
        # Current rows (superseded_by empty) first; within each group in spoken order.
        return (
            super()
            .get_queryset(request)
            .select_related("speaker", "superseded_by")
            .order_by(F("superseded_by").asc(nulls_first=True), "spoken_at", "start_s", "sequence")
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AudioRecordingInline(admin.TabularInline):
    model = AudioRecording
    extra = 0
    fields = ["speaker", "duration_s", "size_bytes", "player"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Audio")
    def player(self, obj: AudioRecording):
        return _audio_player(reverse("recording-audio", args=[obj.pk]) if obj.pk else None)


@admin.register(TranscriptionSession)
class TranscriptionSessionAdmin(admin.ModelAdmin):
    list_display = [
        "title", "owner", "status", "transcript_state", "refine_progress", "language", "created_at", "ended_at",
    ]  # fmt: skip
    list_filter = ["status", "transcript_state", "refine_error_code", "language", "created_at"]
    search_fields = ["title", "owner__username", "utterances__text", "utterances__corrected_text"]
    readonly_fields = [
        "id", "share_token", "created_at", "transcript_state", "refine_progress", "refine_error_code",
        "refine_error", "refined_at", "streams_open", "last_stream_at",
    ]  # fmt: skip
    autocomplete_fields = ["owner"]
    date_hierarchy = "created_at"
    inlines = [SessionMemberInline, AudioRecordingInline, UtteranceInline]
    actions = ["new_share_link", "run_post_session_pass"]

    @admin.action(description="Give a new share link (the old one stops working, its viewers are disconnected)")
    def new_share_link(self, request, queryset) -> None:
        for session in queryset:
            do_rotate_share_token(session)
        self.message_user(request, f"{len(queryset)} session(s) have a new share link.")

    @admin.action(description="Run the post-session pass again (ends active sessions)")
    def run_post_session_pass(self, request, queryset) -> None:
        # force: a pass recorded as running whose worker died would otherwise never run again.
        for session in queryset:
            end_session(session, request.user, force=True)
        self.message_user(request, f"The post-session pass is queued for {len(queryset)} session(s).")

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        if change:  # members removed or roles changed in the inline: their open sockets are checked again
            notify_access_changed(form.instance.pk)

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Utterance)
class UtteranceAdmin(admin.ModelAdmin):
    list_display = [
        "session", "sequence", "speaker", "start_s", "end_s", "short_text", "source", "is_current", "is_corrected",
    ]  # fmt: skip
    list_filter = [
        "source", ("superseded_by", admin.EmptyFieldListFilter), "language", "model_name", "created_at",
        ("corrected_at", admin.EmptyFieldListFilter),
    ]  # fmt: skip
    search_fields = ["text", "corrected_text", "session__title", "speaker__username"]
    list_select_related = ["session", "speaker"]
    readonly_fields = [
        "session", "speaker", "sequence", "start_s", "end_s", "text", "words", "language",
        "confidence", "model_name", "corrected_by", "corrected_at", "created_at", "source", "stream_id",
        "spoken_at", "superseded_by", "superseded_at", "player",
    ]  # fmt: skip
    fields = [*readonly_fields[:8], "corrected_text", *readonly_fields[8:]]
    # The current versions (superseded_by empty) are listed before the versions they replaced.
    ordering = [F("superseded_by").asc(nulls_first=True), "session", "sequence"]

    @admin.display(boolean=True, description="Current")
    def is_current(self, obj: Utterance) -> bool:
        return obj.is_current

    @admin.display(description="Text")
    def short_text(self, obj: Utterance) -> str:
        return obj.display_text[:100]

    @admin.display(boolean=True, description="Corrected")
    def is_corrected(self, obj: Utterance) -> bool:
        return bool(obj.corrected_text)

    @admin.display(description="Audio of this speaker")
    def player(self, obj: Utterance):
        recording = AudioRecording.objects.filter(session_id=obj.session_id, speaker_id=obj.speaker_id).first()
        if recording is None:
            return "-"
        url = reverse("recording-audio", args=[recording.pk]) + f"#t={obj.start_s:.2f},{obj.end_s:.2f}"
        return _audio_player(url)

    def save_model(self, request, obj: Utterance, form, change) -> None:
        if "corrected_text" in form.changed_data:
            obj.corrected_by = request.user
            obj.corrected_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(AudioRecording)
class AudioRecordingAdmin(admin.ModelAdmin):
    list_display = ["session", "speaker", "duration_s", "size_bytes", "updated_at"]
    search_fields = ["session__title", "speaker__username"]
    readonly_fields = ["session", "speaker", "file", "sample_rate", "duration_s", "size_bytes", "player"]

    @admin.display(description="Audio")
    def player(self, obj: AudioRecording):
        return _audio_player(reverse("recording-audio", args=[obj.pk]))


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    list_display = ["original_filename", "owner", "status", "progress", "audio_duration_s", "created_at"]
    list_filter = ["status", "language", "model_name", "error_code", "created_at"]
    search_fields = ["original_filename", "owner__username", "error_message", "corrected_text"]
    readonly_fields = [
        "id", "owner", "upload", "original_filename", "size_bytes", "status", "progress", "language",
        "detected_language", "model_name", "audio_duration_s", "error_code", "error_message", "segments",
        "task_id", "created_at", "started_at", "heartbeat_at", "finished_at", "player", "transcript",
    ]
    fields = [*readonly_fields, "corrected_text"]
    date_hierarchy = "created_at"

    @admin.display(description="Audio")
    def player(self, obj: BatchJob):
        return _audio_player(reverse("job-audio", args=[obj.pk]) if obj.upload else None)

    @admin.display(description="Transcript (original)")
    def transcript(self, obj: BatchJob) -> str:
        return " ".join(segment.get("text", "").strip() for segment in obj.segments)
