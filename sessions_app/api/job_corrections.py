"""``/api/jobs/<id>/segments/<index>/``: one segment of a finished job; PATCH corrects it.

Thin: the rules are in ``sessions_app.job_segments``. Whoever may see the job reads its segments
(``access.access_job``: its owner, and staff); only its owner corrects them. Errors are coded:
NOT_FOUND (no such job for this user, or no such segment), FORBIDDEN (not the owner),
JOB_NOT_DONE / JOB_FAILED (409: no transcript), BAD_REQUEST (no ``corrected_text`` string).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app import access
from sessions_app.api.serializers import ErrorSerializer
from sessions_app.job_segments import (
    MAX_CORRECTION_CHARS,
    JobNotDoneError,
    NoSuchSegmentError,
    do_correct_segment,
    job_segment,
)


class SegmentSerializer(serializers.Serializer):
    """A segment of a job: the machine's ``text`` and ``words``, and a correction beside them."""

    index = serializers.IntegerField(read_only=True, help_text="Position in the transcript, from 0.")
    start = serializers.FloatField(read_only=True)
    end = serializers.FloatField(read_only=True)
    text = serializers.CharField(read_only=True, help_text="What the engine heard; never edited.")
    corrected_text = serializers.CharField(read_only=True, help_text='The correction ("": none).')
    corrected_by = serializers.CharField(read_only=True)
    corrected_at = serializers.CharField(read_only=True, allow_null=True)
    words = serializers.ListField(child=serializers.DictField(), read_only=True)
    speaker_label = serializers.CharField(read_only=True, help_text='A diarized job\'s voice ("S1", ...; "": none).')


class SegmentCorrectionSerializer(serializers.Serializer):
    corrected_text = serializers.CharField(
        allow_blank=True,
        trim_whitespace=True,
        max_length=MAX_CORRECTION_CHARS,
        help_text='The corrected text; "" removes the correction.',
    )


PATH_PARAMS = [
    OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
    OpenApiParameter("index", int, OpenApiParameter.PATH, description="The segment's position, from 0."),
]


def _error(code: str, error: str, http_status: int) -> Response:
    return Response({"code": code, "error": error}, status=http_status)


class JobSegmentView(APIView):
    @extend_schema(parameters=PATH_PARAMS, responses={200: SegmentSerializer, 404: ErrorSerializer,
                                                      409: ErrorSerializer})  # fmt: skip
    def get(self, request: Request, job_id: str, index: str) -> Response:
        """One segment of a finished job."""
        job = access.access_job(request.user, job_id)
        try:
            return Response(job_segment(job, _index(index)))
        except JobNotDoneError as exc:
            return _error(exc.code, str(exc), status.HTTP_409_CONFLICT)
        except NoSuchSegmentError as exc:
            return _error("NOT_FOUND", str(exc), status.HTTP_404_NOT_FOUND)

    @extend_schema(
        parameters=PATH_PARAMS,
        request=SegmentCorrectionSerializer,
        responses={200: SegmentSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer,
                   409: ErrorSerializer},
    )  # fmt: skip
    def patch(self, request: Request, job_id: str, index: str) -> Response:
        """The owner corrects a segment (``{"corrected_text": "..."}``, "" to restore); the original stays."""
        job = access.access_job(request.user, job_id)
        if job.owner_id != request.user.pk:
            raise PermissionDenied("Only the job's owner may correct its transcript.")
        form = SegmentCorrectionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            row = do_correct_segment(job, _index(index), form.validated_data["corrected_text"], request.user)
        except JobNotDoneError as exc:
            return _error(exc.code, str(exc), status.HTTP_409_CONFLICT)
        except NoSuchSegmentError as exc:
            return _error("NOT_FOUND", str(exc), status.HTTP_404_NOT_FOUND)
        return Response(row)


def _index(value: str) -> int:
    """The segment index of the URL; anything but a whole number from 0 is no segment."""
    if not value.isdigit() or not value.isascii():
        raise NoSuchSegmentError(f"A segment index is a whole number from 0, not {value!r}.")
    return int(value)
