from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from sessions_app.api.job_corrections import JobSegmentView
from sessions_app.api.speaker_labels import SpeakerLabelsView
from sessions_app.api.views import BatchJobViewSet, SessionViewSet

router = DefaultRouter()
router.trailing_slash = "/?"  # /api/jobs/{id}/transcript and .../transcript/ both work
router.register("jobs", BatchJobViewSet, basename="api-job")
router.register("sessions", SessionViewSet, basename="api-session")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file (?script), not inline: see CONTENT_SECURITY_POLICY_API.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^jobs/(?P<job_id>[^/.]+)/segments/(?P<index>[^/]+)/?$", JobSegmentView.as_view(), name="api-job-segment"),
    re_path(
        r"^sessions/(?P<session_id>[^/.]+)/speaker-labels/?$", SpeakerLabelsView.as_view(), name="api-speaker-labels"
    ),
    *router.urls,
]
