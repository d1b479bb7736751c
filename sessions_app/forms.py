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


class NewSessionForm(forms.Form):
    title = forms.CharField(max_length=200)
    language = language_field()


class UploadOptionsForm(forms.Form):
    """The upload page's options; its script sends them with the file to ``POST /api/jobs/``."""

    language = language_field()

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "%s")  # the page's script finds the field by id="language"
        super().__init__(*args, **kwargs)


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=SessionMember.Role.choices)
