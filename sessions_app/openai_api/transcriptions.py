"""Views of the OpenAI-compatible REST API: ``POST /v1/audio/transcriptions`` and ``GET /v1/models``.

Thin: the form's checks and the wait for the job are in sessions_app/openai_api/requests.py,
the answer's shapes in responses.py, errors in errors.py. Sync views: under daphne Django runs
them in a thread of their own, so the wait for the worker never holds the event loop.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from sessions_app.api.authentication import CheckedTokenAuthentication
from sessions_app.openai_api.authentication import BearerTokenAuthentication
from sessions_app.openai_api.errors import OpenAIError, openai_exception_handler
from sessions_app.openai_api.model_names import accepted_model_names, model_list, model_object
from sessions_app.openai_api.requests import check_transcription_request, do_transcribe
from sessions_app.openai_api.responses import RESPONSE_FORMATS, TIMESTAMP_GRANULARITIES, render_job

TAG = "OpenAI-compatible"

_error = inline_serializer(
    "OpenAIErrorObject",
    {
        "error": inline_serializer(
            "OpenAIErrorDetail",
            {
                "message": serializers.CharField(),
                "type": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
                "code": serializers.CharField(),
            },
        )
    },
)
_MODEL_FIELDS = {
    "id": serializers.CharField(),
    "object": serializers.CharField(),
    "created": serializers.IntegerField(),
    "owned_by": serializers.CharField(),
}
_model = inline_serializer("OpenAIModel", _MODEL_FIELDS)
_model_list = inline_serializer(
    "OpenAIModelList",
    {"object": serializers.CharField(), "data": inline_serializer("OpenAIModel", _MODEL_FIELDS, many=True)},
)


class TranscriptionForm(serializers.Serializer):
    """Only for the schema: the view reads the form itself (OpenAI's field names and error codes)."""

    file = serializers.FileField(help_text="The audio file (any common format).")
    model = serializers.CharField(help_text="whisper-1 (the configured final model), or a name from GET /v1/models.")
    language = serializers.CharField(required=False, help_text="ISO-639-1 code; detected when left out.")
    prompt = serializers.CharField(
        required=False, help_text="Text that comes before the audio: names, spellings, style."
    )
    response_format = serializers.ChoiceField(choices=RESPONSE_FORMATS, required=False, default="json")
    timestamp_granularities = serializers.ListField(
        child=serializers.ChoiceField(choices=TIMESTAMP_GRANULARITIES),
        required=False,
        help_text="Sent as timestamp_granularities[]; with verbose_json.",
    )
    temperature = serializers.FloatField(required=False, min_value=0, max_value=1, help_text="0 to 1.")


class OpenAIView(APIView):
    authentication_classes = [BearerTokenAuthentication, CheckedTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self):
        return openai_exception_handler


class TranscriptionView(OpenAIView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "uploads"

    @extend_schema(
        tags=[TAG],
        operation_id="openai_create_transcription",
        request={"multipart/form-data": TranscriptionForm},
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/plain"): OpenApiTypes.STR,
            400: _error,
            401: _error,
            413: _error,
            429: _error,
            504: OpenApiResponse(_error, description="The job did not finish in time; the error names its id."),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        """Transcribe a file, as OpenAI's endpoint does. The file becomes a job in the upload history."""
        checked = check_transcription_request(request.data, request.FILES)
        job = do_transcribe(request.user, checked)
        return render_job(job, checked.response_format, checked.granularities)


class ModelListView(OpenAIView):
    @extend_schema(tags=[TAG], operation_id="openai_list_models", responses={200: _model_list})
    def get(self, request: Request) -> Response:
        """The accepted model names (whisper-1 and ours)."""
        return Response(model_list())


class ModelDetailView(OpenAIView):
    @extend_schema(tags=[TAG], operation_id="openai_retrieve_model", responses={200: _model, 404: _error})
    def get(self, request: Request, model: str) -> Response:
        if model not in accepted_model_names():
            raise OpenAIError("UNKNOWN_MODEL", f"The model {model!r} does not exist here.", 404, param="model")
        return Response(model_object(model))
