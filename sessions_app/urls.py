from django.urls import path

from sessions_app import api_tokens, job_pages, join_pages, views

urlpatterns = [
    path("", views.session_list, name="session-list"),
    path("sessions/<uuid:session_id>/members/", views.add_member, name="session-add-member"),
    path(
        "sessions/<uuid:session_id>/members/<str:username>/remove/", views.remove_member, name="session-remove-member"
    ),
    path("sessions/<uuid:session_id>/settings/", views.session_settings, name="session-settings"),
    path("sessions/<uuid:session_id>/share-link/", views.rotate_share_link, name="session-rotate-share-link"),
    path("sessions/<uuid:session_id>/join-link/", join_pages.create_join_link, name="session-create-join-link"),
    path("sessions/<uuid:session_id>/join-link/revoke/", join_pages.revoke_join_link, name="session-revoke-join-link"),
    path("join/<str:token>/", join_pages.join, name="session-join"),
    path("sessions/<uuid:session_id>/close/", views.close_session, name="session-close"),
    path("sessions/<uuid:session_id>/live/", views.live_session, name="session-live"),
    path("sessions/<uuid:session_id>/transcript/", views.transcript, name="session-transcript"),
    path("captions/<uuid:session_id>/", views.captions, name="session-captions"),
    path("upload/", views.upload, name="upload"),
    path("account/api-token/", api_tokens.api_token_page, name="api-token"),
    path("recordings/<int:recording_id>/audio", views.recording_audio, name="recording-audio"),
    path("jobs/<uuid:job_id>/audio", views.job_audio, name="job-audio"),
    path("jobs/<uuid:job_id>/transcript/", job_pages.job_transcript, name="job-transcript"),
]
