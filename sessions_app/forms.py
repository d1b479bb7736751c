from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from sessions_app.models import SessionMember


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class NewSessionForm(forms.Form):
    title = forms.CharField(max_length=200)
    language = forms.CharField(max_length=12, initial="auto", help_text='"auto" detects it; or e.g. "en".')


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=SessionMember.Role.choices)
