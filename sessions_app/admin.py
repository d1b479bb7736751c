"""Admin for reviewers: search, filter, listen and correct (the original text is always kept)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from sessions_app.actions import do_rotate_share_token, notify_access_changed
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
    model = Utterance
    extra = 0
    fields = ["sequence", "speaker", "start_s", "end_s", "text", "corrected_text", "confidence"]
    readonly_fields = ["sequence", "speaker", "start_s", "end_s", "text", "confidence"]
    ordering = ["sequence"]
    show_change_link = True

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
    list_display = ["title", "owner", "status", "language", "created_at", "ended_at"]
    list_filter = ["status", "language", "created_at"]
    search_fields = ["title", "owner__username", "utterances__text", "utterances__corrected_text"]
    readonly_fields = ["id", "share_token", "created_at"]
    autocomplete_fields = ["owner"]
    date_hierarchy = "created_at"
    inlines = [SessionMemberInline, AudioRecordingInline, UtteranceInline]
    actions = ["new_share_link"]

    @admin.action(description="Give a new share link (the old one stops working, its viewers are disconnected)")
    def new_share_link(self, request, queryset) -> None:
        for session in queryset:
            do_rotate_share_token(session)
        self.message_user(request, f"{len(queryset)} session(s) have a new share link.")

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        if change:  # members removed or roles changed in the inline: their open sockets are checked again
            notify_access_changed(form.instance.pk)

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Utterance)
class UtteranceAdmin(admin.ModelAdmin):
    list_display = ["session", "sequence", "speaker", "start_s", "end_s", "short_text", "is_corrected"]
    list_filter = ["language", "model_name", "created_at", ("corrected_at", admin.EmptyFieldListFilter)]
    search_fields = ["text", "corrected_text", "session__title", "speaker__username"]
    list_select_related = ["session", "speaker"]
    readonly_fields = [
        "session", "speaker", "sequence", "start_s", "end_s", "text", "words", "language",
        "confidence", "model_name", "corrected_by", "corrected_at", "created_at", "player",
    ]
    fields = [*readonly_fields[:8], "corrected_text", *readonly_fields[8:]]

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
