"""Admin for reviewers: search, filter, listen and correct (the original text is always kept)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F
from django.forms.models import BaseInlineFormSet
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


def clock(seconds: float | None, *, tenths: bool = False) -> str:
    """Seconds as a reader expects them: ``1:05`` or ``1:02:03``; with ``tenths`` ``1:05.3``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    total = round(seconds, 1) if tenths else round(seconds)
    hours, rest = divmod(int(total), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{text}.{round(total * 10) % 10}" if tenths else text


class SessionMemberInline(admin.TabularInline):
    model = SessionMember
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at"]  # a record, not a setting (and its date and time pickers took a screen's width)


class CappedInlineFormSet(BaseInlineFormSet):
    """Shows the first ``cap`` rows of the inline's ordered queryset, and says how many there are in all.

    A session can hold thousands of utterances: a form for each made the session page slow and many
    screens wide. The rest are one link away, in the utterance list filtered by the session.
    """

    cap = 50

    def get_queryset(self):
        if not hasattr(self, "_capped"):
            everything = super().get_queryset()
            self.total = everything.count()
            self._capped = list(everything[: self.cap])
        return self._capped

    @property
    def shown(self) -> int:
        return len(self.get_queryset())

    @property
    def changelist_url(self) -> str:
        return reverse("admin:sessions_app_utterance_changelist") + f"?session={self.instance.pk}"


class UtteranceInline(admin.TabularInline):
    """The session's utterances, compact and read-only: the current transcript first (in spoken order),
    then the versions it replaced; each row links to the utterance's own page, where it is corrected."""

    model = Utterance
    fk_name = "session"
    formset = CappedInlineFormSet
    template = "admin/sessions_app/utterance_inline.html"
    extra = 0
    can_delete = False
    fields = ["sequence", "times", "speaker", "shown_text", "source", "current", "edit"]
    readonly_fields = fields

    def get_queryset(self, request):
        # Current rows (superseded_by empty) first; within each group in spoken order.
        return (
            super()
            .get_queryset(request)
            .select_related("speaker")
            .order_by(F("superseded_by").asc(nulls_first=True), "spoken_at", "start_s", "sequence")
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Time")
    def times(self, obj: Utterance) -> str:
        return f"{clock(obj.start_s, tenths=True)} to {clock(obj.end_s, tenths=True)}"

    @admin.display(description="Text (corrected where it was)")
    def shown_text(self, obj: Utterance) -> str:
        return obj.display_text

    @admin.display(boolean=True, description="Current")
    def current(self, obj: Utterance) -> bool:
        return obj.is_current

    @admin.display(description="")
    def edit(self, obj: Utterance):
        url = reverse("admin:sessions_app_utterance_change", args=[obj.pk])
        return format_html('<a class="utterance-edit" href="{}">Correct</a>', url)


class AudioRecordingInline(admin.TabularInline):
    model = AudioRecording
    extra = 0
    fields = ["speaker", "length", "size_bytes", "player"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Length")
    def length(self, obj: AudioRecording) -> str:
        return clock(obj.duration_s)

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

    class Media:
        css = {"all": ["css/admin.css"]}

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
        "session", "sequence", "speaker", "start", "end", "short_text", "source", "is_current", "is_corrected",
    ]  # fmt: skip
    list_filter = [
        "source", ("superseded_by", admin.EmptyFieldListFilter), "language", "model_name", "created_at",
        ("corrected_at", admin.EmptyFieldListFilter),
    ]  # fmt: skip
    search_fields = ["text", "corrected_text", "session__title", "speaker__username"]
    list_select_related = ["session", "speaker"]
    readonly_fields = [
        "session", "speaker", "sequence", "start", "end", "text", "words", "language",
        "confidence", "model_name", "corrected_by", "corrected_at", "created_at", "source", "stream_id",
        "spoken_at", "superseded_by", "superseded_at", "player",
    ]  # fmt: skip
    fields = [*readonly_fields[:8], "corrected_text", *readonly_fields[8:]]
    # The current versions (superseded_by empty) are listed before the versions they replaced.
    ordering = [F("superseded_by").asc(nulls_first=True), "session", "sequence"]

    @admin.display(description="Start", ordering="start_s")
    def start(self, obj: Utterance) -> str:
        return clock(obj.start_s, tenths=True)

    @admin.display(description="End", ordering="end_s")
    def end(self, obj: Utterance) -> str:
        return clock(obj.end_s, tenths=True)

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
    list_display = ["session", "speaker", "length", "size_bytes", "updated_at"]
    search_fields = ["session__title", "speaker__username"]
    readonly_fields = ["session", "speaker", "file", "sample_rate", "length", "size_bytes", "player"]
    exclude = ["duration_s"]

    @admin.display(description="Length", ordering="duration_s")
    def length(self, obj: AudioRecording) -> str:
        return clock(obj.duration_s)

    @admin.display(description="Audio")
    def player(self, obj: AudioRecording):
        return _audio_player(reverse("recording-audio", args=[obj.pk]))


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    list_display = ["original_filename", "owner", "status", "progress", "length", "created_at"]
    list_filter = ["status", "language", "model_name", "error_code", "created_at"]
    search_fields = ["original_filename", "owner__username", "error_message", "corrected_text"]
    readonly_fields = [
        "id", "owner", "upload", "original_filename", "size_bytes", "status", "progress", "language",
        "detected_language", "model_name", "length", "error_code", "error_message", "segments",
        "task_id", "created_at", "started_at", "heartbeat_at", "finished_at", "player", "transcript",
    ]  # fmt: skip
    fields = [*readonly_fields, "corrected_text"]
    date_hierarchy = "created_at"

    @admin.display(description="Length", ordering="audio_duration_s")
    def length(self, obj: BatchJob) -> str:
        return clock(obj.audio_duration_s)

    @admin.display(description="Audio")
    def player(self, obj: BatchJob):
        return _audio_player(reverse("job-audio", args=[obj.pk]) if obj.upload else None)

    @admin.display(description="Transcript (original)")
    def transcript(self, obj: BatchJob) -> str:
        return " ".join(segment.get("text", "").strip() for segment in obj.segments)
