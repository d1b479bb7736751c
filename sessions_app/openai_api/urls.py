from django.urls import path

from sessions_app.openai_api.transcriptions import ModelDetailView, ModelListView, TranscriptionView


def _also_with_slash(view_class):
    """The same view for the path with a trailing slash (a redirect would lose a POST), left out of the schema."""
    return type(f"{view_class.__name__}WithSlash", (view_class,), {"schema": None}).as_view()


# OpenAI's clients send no trailing slash; the paths of our own API end in one. Both work.
urlpatterns = [
    path("audio/transcriptions", TranscriptionView.as_view(), name="openai-transcriptions"),
    path("audio/transcriptions/", _also_with_slash(TranscriptionView)),
    path("models", ModelListView.as_view(), name="openai-models"),
    path("models/", _also_with_slash(ModelListView)),
    path("models/<str:model>", ModelDetailView.as_view(), name="openai-model"),
]
