from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from sessions_app.models import SessionMember
from stt_engine.languages import AUTO, normalize_language


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class NewSessionForm(forms.Form):
    title = forms.CharField(max_length=200)
    language = forms.CharField(max_length=12, initial="auto", help_text='"auto" detects it; or e.g. "en".')

    def clean_language(self) -> str:
        language = normalize_language(self.cleaned_data["language"] or AUTO)
        if language is None:
            raise forms.ValidationError('Use "auto" or one of Whisper\'s language codes such as "en" or "de".')
        return language


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=SessionMember.Role.choices)
