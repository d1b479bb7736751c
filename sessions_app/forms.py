from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from sessions_app.models import SessionMember
from stt_engine.languages import AUTO

# The languages the pages offer, in one place: the "New session" form and the upload page show the
# same dropdown. (The REST API takes any of Whisper's language codes.)
LANGUAGE_CHOICES = [
    (AUTO, "Detect"),
    ("en", "English"),
    ("de", "German"),
    ("fr", "French"),
    ("es", "Spanish"),
]


def language_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        choices=LANGUAGE_CHOICES,
        initial=AUTO,
        help_text="Detect works out the language from the first words.",
    )


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


def room_microphone_field() -> forms.BooleanField:
    return forms.BooleanField(
        required=False,
        label="Room microphone (several people share one microphone)",
        help_text="Tells the voices apart: their lines read Speaker 1, Speaker 2, … until you name them.",
    )


class NewSessionForm(forms.Form):
    title = forms.CharField(max_length=200)
    language = language_field()
    room_microphone = room_microphone_field()


class SessionSettingsForm(forms.Form):
    """What the owner changes on a session after creating it (the session list's Settings)."""

    room_microphone = room_microphone_field()


class UploadOptionsForm(forms.Form):
    """The upload page's options; its script sends them with the file to ``POST /api/jobs/``."""

    language = language_field()
    diarize = forms.BooleanField(
        required=False,
        label="Identify speakers",
        help_text="Several people in the recording: each segment is labelled Speaker 1, Speaker 2, …",
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "%s")  # the page's script finds the fields by id ("language", "diarize")
        super().__init__(*args, **kwargs)


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=SessionMember.Role.choices)
