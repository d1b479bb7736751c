"""Server-rendered pages. Thin: permission checks in ``access``, changes in ``actions``."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from sessions_app import access, actions, speakers
from sessions_app.exports import EXPORT_MENU, session_origin, turn_fields
from sessions_app.file_responses import ranged_file_response
from sessions_app.forms import AddMemberForm, NewSessionForm, SessionSettingsForm, SignUpForm, UploadOptionsForm
from sessions_app.join_links import active_join_links
from sessions_app.join_pages import join_url
from sessions_app.meeting_record.post_session import end_session
from sessions_app.meeting_record.turns import Turn, group_into_turns
from sessions_app.models import SessionMember, TranscriptionSession, Utterance
from sessions_app.session_summaries import summarize_sessions


def sign_up(request: HttpRequest) -> HttpResponse:
    """Create an account, sign in, then go to ``next`` (e.g. the join link that sent the visitor) or home."""
    next_url = _safe_next(request)
    if request.user.is_authenticated:
        return redirect(next_url or "session-list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome, {user.username}.")
        return redirect(next_url or "session-list")
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


def _safe_next(request: HttpRequest) -> str:
    """The ``next`` of the request if it points into this site (as the sign-in page checks it), else ""."""
    url = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return url if safe else ""


def session_list(request: HttpRequest) -> HttpResponse:
    """The home page: a signed-in user's sessions; what the product does for a visitor who is signed out."""
    if not request.user.is_authenticated:
        if request.method != "GET":
            return redirect_to_login(request.get_full_path())
        return render(request, "sessions_app/landing.html")
    form = NewSessionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        session = actions.do_create_session(
            request.user, data["title"], data["language"], room_microphone=data["room_microphone"]
        )
        messages.success(request, f"Session “{session.title}” created.")
        return redirect("session-list")
    sessions = list(access.sessions_visible_to(request.user).select_related("owner"))
    summaries = summarize_sessions(session.pk for session in sessions)
    join_links = active_join_links(s.pk for s in sessions if s.owner_id == request.user.pk)
    for session in sessions:
        session.summary = summaries[session.pk]
        # Only the owner hands out the share link (the API shows the token to the owner alone).
        owner = session.owner_id == request.user.pk
        session.caption_link = request.build_absolute_uri(caption_url(session, with_token=True)) if owner else ""
        session.join_link = join_url(request, join_links[session.pk]) if session.pk in join_links else ""
        session.other_members = (
            list(
                session.memberships.exclude(user_id=session.owner_id).select_related("user").order_by("user__username")
            )
            if owner
            else []
        )
    return render(
        request,
        "sessions_app/session_list.html",
        {"form": form, "sessions": sessions, "member_form": AddMemberForm()},
    )


def caption_url(session: TranscriptionSession, with_token: bool) -> str:
    url = reverse("session-captions", args=[session.pk])
    return f"{url}?token={session.share_token}" if with_token else url


@login_required
def live_session(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session(request.user, session_id)
    role = access.role_in_session(request.user, session)
    return render(request, "sessions_app/live.html", {
        "session": session,
        "role": role,
        "can_stream": access.can_stream(request.user, session),
        "turns": _recent_turns(session, 100),
        "page_config": {
            "sessionId": str(session.pk),
            "speakers": _speakers_config(session),
            "labels": _labels_config(session),
            "language": session.language,
            "username": request.user.get_username(),
            "canStream": access.can_stream(request.user, session),
            # (the page paces the audio it sends again after a lost connection within these)
            "audioBurstS": settings.STT_AUDIO_BURST_S,
            "maxAudioSpeed": settings.STT_MAX_AUDIO_SPEED,
        },
    })  # fmt: skip


def captions(request: HttpRequest, session_id) -> HttpResponse:
    """The read-only caption page: open to members, and to anyone with the share token."""
    token = request.GET.get("token") or None
    session = TranscriptionSession.objects.filter(pk=session_id).first()
    if session is None or not access.can_view(request.user, session, token):
        raise Http404("No such session.")
    return render(request, "sessions_app/captions.html", {
        "session": session,
        "turns": _recent_turns(session, 50),
        "page_config": {"sessionId": str(session.pk), "token": token or "", "speakers": _speakers_config(session),
                        "labels": _labels_config(session)},
    })  # fmt: skip


@login_required
def transcript(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session(request.user, session_id)
    utterances = list(_utterances(session))
    turns = group_into_turns(utterances, namer=speakers.line_namer(session.pk))
    origin = session_origin(utterances)
    names = {s.speaker_id: s for s in speakers.session_speakers(session.pk)}
    labels = list(speakers.label_names(session.pk).values())
    recordings = {
        r.speaker_id: {"speaker": names[r.speaker_id].name if r.speaker_id in names else r.speaker.get_username(),
                       "speaker_id": r.speaker_id,
                       "url": reverse("recording-audio", args=[r.pk]),
                       "duration": r.duration_s}
        for r in session.recordings.select_related("speaker").order_by("speaker__username")
    }  # fmt: skip
    rows = [
        {
            "id": u.pk, "sequence": u.sequence, "speaker": u.speaker.get_username(), "speaker_id": u.speaker_id,
            "speaker_name": u.speaker_name, "speaker_label": u.speaker_label,
            "start": u.start_s, "end": u.end_s, "text": u.text, "corrected_text": u.corrected_text,
            "corrected_by": u.corrected_by.get_username() if u.corrected_by_id else "",
            "created_at": u.created_at.isoformat(), "words": u.words or [], "source": u.source,
            "spoken_at": u.spoken_at.isoformat() if u.spoken_at else None,
        }
        for u in utterances
    ]  # fmt: skip
    can_correct = access.role_in_session(request.user, session) == SessionMember.Role.SPEAKER
    # (what the page says differently for a batch job: sessions_app/job_pages.py)
    page = {
        "title": session.title,
        "status": session.status,
        "status_display": session.get_status_display(),
        "created_at": session.created_at,
        "links": [(reverse("session-live", args=[session.pk]), "Live page")],
        "details": [],
        "show_speakers": True,
        "side_label": "Speakers, audio and export",
        "empty_text": "Nothing has been said in this session yet.",
        "help": "Click a word to play from there; ▶ Play plays one turn. Times: into the session, then the clock.",
    }
    return render(request, "sessions_app/transcript.html", {
        "page": page,
        "session": session,
        "recordings": list(recordings.values()),
        "speakers": list(names.values()),
        "labels": labels,
        "can_rename": session.owner_id == request.user.pk,
        "export_url": reverse("api-session-export", args=[session.pk]),
        "export_formats": EXPORT_MENU,
        "page_config": {
            "sessionId": str(session.pk), "canCorrect": can_correct, "utterances": rows,
            "correctionUrl": f"/api/sessions/{session.pk}/utterances/{{id}}/", "unit": ["utterance", "utterances"],
            "speakers": [s.as_message() for s in names.values()], "canRename": session.owner_id == request.user.pk,
            "labels": [s.as_label_message() for s in labels],
            "turns": [turn_fields(turn, origin) for turn in turns],
            "recordings": {str(k): v for k, v in recordings.items()},
            "transcriptState": session.transcript_state, "refineProgress": session.refine_progress,
        },
    })  # fmt: skip


RECENT_JOBS = 10  # how many uploads the upload page lists


@login_required
def upload(request: HttpRequest) -> HttpResponse:
    """Upload a file; the recent uploads, kept up to date by the page (static/js/upload.js polls /api/jobs/)."""
    recent = access.jobs_visible_to(request.user).order_by("-created_at")[:RECENT_JOBS]
    return render(request, "sessions_app/upload.html", {
        "jobs": recent,
        "options_form": UploadOptionsForm(),
        "export_formats": EXPORT_MENU,
        "page_config": {"recentJobs": RECENT_JOBS, "exportMenu": EXPORT_MENU},
    })  # fmt: skip


def _utterances(session: TranscriptionSession):
    """The session's current transcript (superseded versions left out), in spoken order, speakers named."""
    return (
        Utterance.objects.current()
        .with_speaker_names()
        .filter(session=session)
        .select_related("speaker", "corrected_by")
    )


def _speakers_config(session: TranscriptionSession) -> list[dict]:
    """The session's speakers for a page's script: id, username, display name and colour."""
    return [s.as_message() for s in speakers.session_speakers(session.pk)]


def _labels_config(session: TranscriptionSession) -> list[dict]:
    """The labels of the session's diarized streams for a page's script: id, label, name and colour."""
    return [s.as_label_message() for s in speakers.label_names(session.pk).values()]


def _recent_turns(session: TranscriptionSession, limit: int) -> list[Turn]:
    """The turns of the last ``limit`` current utterances (what a live page starts with)."""
    recent = list(_utterances(session).reverse()[:limit])
    return group_into_turns(reversed(recent))


@login_required
@require_POST
def add_member(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    form = AddMemberForm(request.POST)
    if form.is_valid():
        try:
            actions.do_add_member(session, form.cleaned_data["username"], form.cleaned_data["role"])
            messages.success(request, f"{form.cleaned_data['username']} added as {form.cleaned_data['role']}.")
        except LookupError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Give a username and a role.")
    return redirect("session-list")


@login_required
@require_POST
def session_settings(request: HttpRequest, session_id) -> HttpResponse:
    """The owner changes a session's settings (room microphone: streams started from now on are diarized)."""
    session = access.access_session_as_owner(request.user, session_id)
    form = SessionSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Those settings could not be saved.")
        return redirect("session-list")
    room_microphone = form.cleaned_data["room_microphone"]
    if session.room_microphone != room_microphone:
        session.room_microphone = room_microphone
        session.save(update_fields=["room_microphone"])
    state = "on" if room_microphone else "off"
    messages.success(request, f"“{session.title}”: room microphone {state} (for streams started from now on).")
    return redirect("session-list")


@login_required
@require_POST
def rotate_share_link(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    actions.do_rotate_share_token(session)
    messages.success(request, f"“{session.title}” has a new caption link; the old one no longer works.")
    return redirect("session-list")


@login_required
@require_POST
def remove_member(request: HttpRequest, session_id, username: str) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    if actions.do_remove_member(session, username):
        messages.success(request, f"{username} was removed from “{session.title}”.")
    else:
        messages.error(request, f"{username} is not a member of “{session.title}”.")
    return redirect("session-list")


@login_required
@require_POST
def close_session(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    end_session(session, request.user)
    messages.success(request, f"Session “{session.title}” closed.")
    return redirect("session-list")


@login_required
def recording_audio(request: HttpRequest, recording_id: int) -> HttpResponse:
    recording = access.access_recording(request.user, recording_id)
    return ranged_file_response(request, recording.file.path, "audio/wav")


@login_required
def job_audio(request: HttpRequest, job_id) -> HttpResponse:
    job = access.access_job(request.user, job_id)
    return ranged_file_response(request, job.upload.path)
