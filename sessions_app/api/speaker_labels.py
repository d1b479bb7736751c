"""``/api/sessions/<id>/speaker-labels/``: the diarized voices of a session's room microphones.

Thin: the rules are in ``sessions_app.speakers``. Whoever may see the session reads its labels;
only its owner names them (PATCH), as with the member rename: NOT_FOUND (no such session for this
user, or no such speaker in it), FORBIDDEN (403: not the owner), BAD_DISPLAY_NAME, BAD_LABEL,
BAD_REQUEST (not ``{"speaker_id": int, "label": str, "display_name": str}``).
"""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app import access
from sessions_app.api.serializers import ErrorSerializer
from sessions_app.speakers import BadDisplayNameError, BadLabelError, do_rename_label, label_names


class SpeakerLabelSerializer(serializers.Serializer):
    """One voice of a speaker's room microphone: ``label`` as the stream gave it, ``name`` as pages show it."""

    speaker_id = serializers.IntegerField(read_only=True, help_text="The user whose stream heard this voice.")
    speaker = serializers.CharField(source="username", read_only=True, help_text="That user's username.")
    label = serializers.CharField(read_only=True, help_text='"S1", "S2", ... in order of first appearance.')
    name = serializers.CharField(read_only=True, help_text='What pages and exports show ("Speaker 2" unnamed).')
    display_name = serializers.CharField(read_only=True, help_text='What the owner set ("": "Speaker N").')
    colour = serializers.IntegerField(read_only=True, help_text="Index in the palette of 8 speaker colours.")


class SpeakerLabelRenameSerializer(serializers.Serializer):
    speaker_id = serializers.IntegerField(help_text="The user whose stream heard the voice.")
    label = serializers.CharField(max_length=16, help_text='The label, "S2".')
    display_name = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=200, help_text='At most 80 characters; "" resets.'
    )


SESSION_PARAM = OpenApiParameter("session_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def _error(code: str, error: str, http_status: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"code": code, "error": error}, status=http_status)


class SpeakerLabelsView(APIView):
    @extend_schema(parameters=[SESSION_PARAM], responses={200: SpeakerLabelSerializer(many=True),
                                                          404: ErrorSerializer})  # fmt: skip
    def get(self, request: Request, session_id: str) -> Response:
        """Every label of the session (named, or heard in its transcript) with its name and colour."""
        session = access.access_session(request.user, session_id)
        return Response(SpeakerLabelSerializer(list(label_names(session.pk).values()), many=True).data)

    @extend_schema(
        parameters=[SESSION_PARAM],
        request=SpeakerLabelRenameSerializer,
        responses={200: SpeakerLabelSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
    )
    def patch(self, request: Request, session_id: str) -> Response:
        """Owner only: name one voice (``{"speaker_id": 3, "label": "S2", "display_name": "Alice"}``; "" gives
        back "Speaker 2") in this session's pages and exports. Open pages hear of it (``stt_speakers``)."""
        session = access.access_session(request.user, session_id)
        if session.owner_id != request.user.pk:
            raise PermissionDenied("Only the session's owner may rename its speakers.")
        # (names and labels are checked by sessions_app.speakers, so every bad one gets its own code)
        data = request.data
        if not isinstance(data, Mapping) or not {"speaker_id", "label", "display_name"} <= set(data):
            return _error("BAD_REQUEST", 'Send {"speaker_id": 3, "label": "S2", "display_name": "..."}.')
        speaker_id = data["speaker_id"]
        if isinstance(speaker_id, bool) or not isinstance(speaker_id, int):
            return _error("BAD_REQUEST", "speaker_id must be a whole number.")
        if not 0 < speaker_id < 2**63:  # (a bigger id overflows the database's integer)
            return _error("NOT_FOUND", "No such speaker in this session.", status.HTTP_404_NOT_FOUND)
        try:
            label = do_rename_label(session, speaker_id, data["label"], data["display_name"])
        except (BadDisplayNameError, BadLabelError) as exc:
            return _error(exc.code, str(exc))
        except LookupError as exc:
            return _error("NOT_FOUND", str(exc), status.HTTP_404_NOT_FOUND)
        return Response(SpeakerLabelSerializer(label).data)
