from django.urls import path, re_path

from sessions_app.openai_api.transcriptions import ModelDetailView, ModelListView, TranscriptionView

# With and without the trailing slash: OpenAI's clients send none, and a redirect would lose a POST.
urlpatterns = [
    re_path(r"^audio/transcriptions/?$", TranscriptionView.as_view(), name="openai-transcriptions"),
    re_path(r"^models/?$", ModelListView.as_view(), name="openai-models"),
    path("models/<str:model>", ModelDetailView.as_view(), name="openai-model"),
]
