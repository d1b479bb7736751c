"""REST endpoints: thin views over sessions_app.access, .actions, .jobs, .uploads and .exports."""

from __future__ import annotations

from collections.abc import Mapping

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from sessions_app import access, exports
from sessions_app.actions import do_create_session, do_remove_member, do_rotate_share_token
from sessions_app.api.filters import BadFilterError, filter_utterances
from sessions_app.api.serializers import (
    BatchJobCreateSerializer,
    BatchJobSerializer,
    ErrorSerializer,
    JoinLinkSerializer,
    SessionDetailSerializer,
    SessionSerializer,
    SpeakerRenameSerializer,
    SpeakerSerializer,
    UtteranceCorrectionSerializer,
    UtteranceSerializer,
)
from sessions_app.file_responses import ranged_file_response
from sessions_app.jobs import do_create_job, do_delete_job, recover_stale_jobs
from sessions_app.join_links import active_join_link, do_create_join_link, do_revoke_join_links
from sessions_app.meeting_record.post_session import end_session
from sessions_app.models import BatchJob, SessionMember, Utterance
from sessions_app.speakers import BadDisplayNameError, do_rename_speaker, session_speakers
from sessions_app.uploads import UploadRejectedError, check_upload

FORMAT_PARAM = OpenApiParameter("format", str, enum=list(exports.FORMATS), default="json", description="Export format.")
TIMES_PARAM = OpenApiParameter("times", str, enum=["1"], description="TXT: each turn (segment) with its times.")


def error_response(code: str, error: str, http_status: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"code": code, "error": error}, status=http_status)


class IgnoreFormatNegotiation(BaseContentNegotiation):
    """``?format=srt`` names an export format here, not a DRF renderer: always answer JSON errors."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def export_response(export: exports.Export, download: bool) -> HttpResponse:
    response = HttpResponse(export.content, content_type=export.content_type)
    disposition = "attachment" if download else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{export.filename}"'
    return response


def _times(request: Request) -> bool:
    return request.query_params.get("times") == "1"


def _export_format(request: Request) -> str | None:
    fmt = (request.query_params.get("format") or "json").lower()
    return fmt if fmt in exports.FORMATS else None


class BatchJobViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Batch transcription jobs of the requesting user."""

    serializer_class = BatchJobSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    throttle_scope = "uploads"

    def get_queryset(self):
        return access.jobs_visible_to(self.request.user)

    def get_object(self) -> BatchJob:
        return access.access_job(self.request.user, self.kwargs["pk"])

    def get_throttles(self):
        return [ScopedRateThrottle()] if self.action == "create" else super().get_throttles()

    def list(self, request: Request, *args, **kwargs) -> Response:
        recover_stale_jobs()
        return super().list(request, *args, **kwargs)

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        recover_stale_jobs()
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": BatchJobCreateSerializer},
        responses={202: BatchJobSerializer, 400: ErrorSerializer, 429: OpenApiResponse(description="Throttled")},
    )
    def create(self, request: Request) -> Response:
        """Upload an audio file; answers 202 with the queued job."""
        form = BatchJobCreateSerializer(data=request.data)
        if not form.is_valid():
            field, problems = next(iter(form.errors.items()))
            code = "BAD_LANGUAGE" if field == "language" else "BAD_REQUEST"
            return error_response(code, f"{field}: {' '.join(str(p) for p in problems)}")
        upload = form.validated_data.get("file")
        try:
            duration = check_upload(upload)
        except UploadRejectedError as exc:
            return error_response(exc.code, exc.error)
        job = do_create_job(
            request.user,
            upload,
            duration_s=duration,
            language=form.validated_data["language"],
            model=form.validated_data.get("model", ""),
            diarize=form.validated_data["diarize"],
        )
        return Response(BatchJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    def perform_destroy(self, instance: BatchJob) -> None:
        do_delete_job(instance)

    @extend_schema(
        parameters=[FORMAT_PARAM, TIMES_PARAM],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/plain"): OpenApiTypes.STR,
            409: ErrorSerializer,
        },
    )
    @action(detail=True, methods=["get"], url_path="transcript", url_name="transcript",
            content_negotiation_class=IgnoreFormatNegotiation)  # fmt: skip
    def transcript(self, request: Request, pk=None) -> HttpResponse:
        """The transcript of a finished job as JSON, TXT, SRT or WebVTT (409 while it is not done)."""
        job = self.get_object()
        fmt = _export_format(request)
        if fmt is None:
            return error_response("BAD_FORMAT", f"format must be one of {', '.join(exports.FORMATS)}.")
        if job.status == BatchJob.Status.FAILED:
            return error_response("JOB_FAILED", f"The job failed: {job.error_code}.", status.HTTP_409_CONFLICT)
        if job.status != BatchJob.Status.DONE:
            return error_response(
                "JOB_NOT_DONE", f"The job is {job.status} ({job.progress}%); try again later.", status.HTTP_409_CONFLICT
            )
        return export_response(
            exports.export_job(job, fmt, times=_times(request)), request.query_params.get("download") == "1"
        )

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], url_path="audio", url_name="audio")
    def audio(self, request: Request, pk=None) -> HttpResponse:
        """The uploaded file (supports Range requests)."""
        job = self.get_object()
        return ranged_file_response(request._request, job.upload.path)


class SessionViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     mixins.UpdateModelMixin, viewsets.GenericViewSet):  # fmt: skip
    """Live sessions the requesting user owns or is a member of.

    The owner may change ``title``, ``language`` and ``room_microphone`` (PATCH); a change of
    ``room_microphone`` applies to the streams started after it.
    """

    serializer_class = SessionSerializer

    def get_queryset(self):
        return access.sessions_visible_to(self.request.user).select_related("owner")

    def get_object(self):
        return access.access_session(self.request.user, self.kwargs["pk"])

    def perform_create(self, serializer: SessionSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = do_create_session(
            self.request.user,
            data["title"],
            data.get("language", "auto"),
            room_microphone=data.get("room_microphone", False),
        )

    @extend_schema(responses={200: SessionSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer})
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        """Owner only: change the session's title, language or room microphone setting."""
        return super().partial_update(request, *args, **kwargs)

    @extend_schema(responses={200: SessionSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer})
    def update(self, request: Request, *args, **kwargs) -> Response:
        """Owner only: set the session's title, language and room microphone setting."""
        if self.get_object().owner_id != request.user.pk:  # (before the body is checked: members get 403)
            raise PermissionDenied("Only the session's owner may change its settings.")
        return super().update(request, *args, **kwargs)

    def get_serializer_class(self):
        return SessionDetailSerializer if self.action == "retrieve" else SessionSerializer

    @extend_schema(responses={(200, "audio/wav"): OpenApiTypes.BINARY, 404: ErrorSerializer})
    @action(
        detail=True,
        methods=["get"],
        url_path=r"recordings/(?P<recording_id>[0-9]+)/audio",
        url_name="recording-audio",
    )
    def recording_audio(self, request: Request, pk=None, recording_id=None) -> HttpResponse:
        """One speaker's recording of the session, a WAV file (supports Range requests)."""
        session = self.get_object()
        recording = access.access_recording(request.user, int(recording_id))
        if recording.session_id != session.pk or not recording.file:
            raise NotFound("No such recording in this session.")
        return ranged_file_response(request._request, recording.file.path, "audio/wav")

    @extend_schema(
        parameters=[
            OpenApiParameter("speaker", str, description="Username or user id."),
            OpenApiParameter("start_after", float, description="Utterances starting at or after (s)."),
            OpenApiParameter("end_before", float, description="Utterances ending at or before (s)."),
            OpenApiParameter("search", str, description="Text in the original or corrected text."),
            OpenApiParameter(
                "versions",
                str,
                enum=["current", "all"],
                description="current (default): the transcript as it stands, in spoken order; "
                "all: every version, superseded rows included, in order of arrival.",
            ),
        ],
        responses={200: UtteranceSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], url_path="utterances", url_name="utterances")
    def utterances(self, request: Request, pk=None) -> Response:
        """The session's current utterances in spoken order (``versions=all``: every version), paginated."""
        session = self.get_object()
        versions = request.query_params.get("versions") or "current"
        if versions not in ("current", "all"):
            return error_response("BAD_FILTER", "versions must be current or all.")
        queryset = session.utterances.with_speaker_names().select_related("speaker", "corrected_by")
        queryset = queryset.order_by("sequence") if versions == "all" else queryset.current()
        try:
            queryset = filter_utterances(queryset, request.query_params)
        except BadFilterError as exc:
            return error_response("BAD_FILTER", str(exc))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(UtteranceSerializer(page, many=True).data)

    @extend_schema(request=UtteranceCorrectionSerializer, responses={200: UtteranceSerializer, 403: ErrorSerializer})
    @action(detail=True, methods=["get", "patch"], url_path=r"utterances/(?P<utterance_id>\d+)",
            url_name="utterance")  # fmt: skip
    def utterance(self, request: Request, pk=None, utterance_id: str = "") -> Response:
        """Read one utterance, or correct it (speakers and the owner; the original text is kept)."""
        session = self.get_object()
        utterance = (
            Utterance.objects.with_speaker_names()
            .select_related("speaker", "corrected_by")
            .filter(session=session, pk=int(utterance_id))
            .first()
            if int(utterance_id) < 2**63  # (a bigger id overflows the database's integer)
            else None
        )
        if utterance is None:
            return error_response("NOT_FOUND", "No such utterance.", status.HTTP_404_NOT_FOUND)
        if request.method == "PATCH":
            if access.role_in_session(request.user, session) != SessionMember.Role.SPEAKER:
                raise PermissionDenied("Only the session's speakers may correct its transcript.")
            form = UtteranceCorrectionSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            utterance.correct(form.validated_data["corrected_text"], request.user)
        return Response(UtteranceSerializer(utterance).data)

    @extend_schema(request=None, responses={202: SessionSerializer, 403: ErrorSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"], url_path="end", url_name="end")
    def end(self, request: Request, pk=None) -> Response:
        """Owner only: end the session (its streams stop) and queue the post-session pass.

        Again on an ended session whose pass failed or finished: the pass runs again.
        """
        session = self.get_object()
        if session.owner_id != request.user.pk:
            raise PermissionDenied("Only the session's owner may end it.")
        session = end_session(session, request.user)
        return Response(self.get_serializer(session).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 404: ErrorSerializer})
    @action(detail=True, methods=["post"], url_path="share-token", url_name="share-token")
    def share_token(self, request: Request, pk=None) -> Response:
        """Owner only: a new share token; the old link stops working and its viewers are disconnected."""
        session = access.access_session_as_owner(request.user, pk)
        return Response({"share_token": do_rotate_share_token(session)})

    @extend_schema(responses={200: SpeakerSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="speakers", url_name="speakers")
    def speakers(self, request: Request, pk=None) -> Response:
        """The session's speakers (members who may speak, and anyone who spoke) with their names and colours."""
        session = self.get_object()
        return Response(SpeakerSerializer(session_speakers(session.pk), many=True).data)

    @extend_schema(
        request=SpeakerRenameSerializer,
        responses={200: SpeakerSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
    )
    @action(detail=True, methods=["get", "patch"], url_path=r"speakers/(?P<user_id>\d+)", url_name="speaker")
    def speaker(self, request: Request, pk=None, user_id: str = "") -> Response:
        """One speaker; PATCH ``{"display_name": "..."}`` (owner only) renames them in this session's pages
        and exports ("" gives them their username back). Open pages hear of it (``stt_speakers``)."""
        session = self.get_object()
        member_id = int(user_id) if int(user_id) < 2**63 else 0  # (a bigger id overflows the database's integer)
        if request.method == "GET":
            speaker = next((s for s in session_speakers(session.pk) if s.speaker_id == member_id), None)
            if speaker is None:
                return error_response("NOT_FOUND", "No such speaker in this session.", status.HTTP_404_NOT_FOUND)
            return Response(SpeakerSerializer(speaker).data)
        if session.owner_id != request.user.pk:
            raise PermissionDenied("Only the session's owner may rename its speakers.")
        # (checked by check_display_name, not the serializer: every bad name gets BAD_DISPLAY_NAME)
        if not isinstance(request.data, Mapping) or "display_name" not in request.data:
            return error_response("BAD_REQUEST", 'Send {"display_name": "..."}.')
        try:
            speaker = do_rename_speaker(session, member_id, request.data["display_name"])
        except BadDisplayNameError as exc:
            return error_response(exc.code, str(exc))
        except LookupError as exc:
            return error_response("NOT_FOUND", str(exc), status.HTTP_404_NOT_FOUND)
        return Response(SpeakerSerializer(speaker).data)

    @extend_schema(
        methods=["GET", "POST"], request=None, responses={200: JoinLinkSerializer, 201: JoinLinkSerializer,
                                                         404: ErrorSerializer, 409: ErrorSerializer}
    )  # fmt: skip
    @extend_schema(methods=["DELETE"], request=None, responses={204: None, 404: ErrorSerializer})
    @action(detail=True, methods=["get", "post", "delete"], url_path="join-link", url_name="join-link")
    def join_link(self, request: Request, pk=None) -> Response:
        """Owner only: the session's speaker join link. GET reads it, POST makes a new one (the old one stops
        working), DELETE revokes it (who joined stays a member). Opening the link makes a signed-in user a speaker."""
        session = access.access_session_as_owner(request.user, pk)
        if request.method == "POST":
            if not session.is_active:
                return error_response("SESSION_ENDED", "The session has ended.", status.HTTP_409_CONFLICT)
            link = do_create_join_link(session, request.user)
            return Response(JoinLinkSerializer(link, context={"request": request}).data, status=status.HTTP_201_CREATED)
        if request.method == "DELETE":
            if not do_revoke_join_links(session):
                return error_response("NOT_FOUND", "The session has no join link.", status.HTTP_404_NOT_FOUND)
            return Response(status=status.HTTP_204_NO_CONTENT)
        link = active_join_link(session)
        if link is None:
            return error_response("NOT_FOUND", "The session has no join link.", status.HTTP_404_NOT_FOUND)
        return Response(JoinLinkSerializer(link, context={"request": request}).data)

    @extend_schema(request=None, responses={204: None, 404: ErrorSerializer})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<username>[^/]+)", url_name="member")
    def member(self, request: Request, pk=None, username: str = "") -> Response:
        """Owner only: remove a member (not the owner); their open sockets are closed."""
        session = access.access_session_as_owner(request.user, pk)
        if not do_remove_member(session, username):
            return error_response("NOT_FOUND", f"{username!r} is not a member to remove.", status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[FORMAT_PARAM, TIMES_PARAM], responses={(200, "text/plain"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], url_path="export", url_name="export",
            content_negotiation_class=IgnoreFormatNegotiation)  # fmt: skip
    def export(self, request: Request, pk=None) -> HttpResponse:
        """The session's transcript (corrected text where there is one), speakers labelled."""
        session = self.get_object()
        fmt = _export_format(request)
        if fmt is None:
            return error_response("BAD_FORMAT", f"format must be one of {', '.join(exports.FORMATS)}.")
        export = exports.export_session(session, fmt, times=_times(request))
        return export_response(export, request.query_params.get("download") == "1")
