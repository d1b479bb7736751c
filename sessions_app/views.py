"""Server-rendered pages. Thin: permission checks in ``access``, changes in ``actions``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from sessions_app import access, actions
from sessions_app.file_responses import ranged_file_response
from sessions_app.forms import AddMemberForm, NewSessionForm, SignUpForm


def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("session-list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome, {user.username}.")
        return redirect("session-list")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def session_list(request: HttpRequest) -> HttpResponse:
    form = NewSessionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        session = actions.do_create_session(request.user, form.cleaned_data["title"], form.cleaned_data["language"])
        messages.success(request, f"Session “{session.title}” created.")
        return redirect("session-list")
    sessions = access.sessions_visible_to(request.user).select_related("owner")
    return render(
        request,
        "sessions_app/session_list.html",
        {"form": form, "sessions": sessions, "member_form": AddMemberForm()},
    )


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
def close_session(request: HttpRequest, session_id) -> HttpResponse:
    session = access.access_session_as_owner(request.user, session_id)
    session.close()
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
