from __future__ import annotations

import openai
import pytest


@pytest.mark.django_db(transaction=True)
def test_the_model_list_names_whisper_1_and_our_models_in_openai_shape(sdk, settings):
    models = sdk.models.list()
    ids = [model.id for model in models.data]
    assert "whisper-1" in ids and "base" in ids and "tiny.en" in ids and settings.STT_FINAL_MODEL in ids
    for model in models.data:
        assert model.object == "model" and isinstance(model.created, int) and model.owned_by


@pytest.mark.django_db(transaction=True)
def test_the_raw_model_list_is_an_openai_list_object(sdk):
    body = sdk.models.with_raw_response.list().http_response.json()
    assert body["object"] == "list"
    assert set(body["data"][0]) == {"id", "object", "created", "owned_by"}


@pytest.mark.django_db(transaction=True)
def test_one_model_can_be_retrieved_and_an_unknown_one_is_not_found(sdk):
    assert sdk.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("gpt-9-imaginary")
    assert caught.value.status_code == 404
    assert caught.value.body["code"] == "UNKNOWN_MODEL"


@pytest.mark.django_db(transaction=True)
def test_the_model_list_needs_a_valid_token(client_for):
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for("0" * 40).models.list()
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "NOT_AUTHENTICATED"


@pytest.mark.django_db(transaction=True)
def test_the_model_list_answers_with_and_without_a_trailing_slash(api_token):
    from rest_framework.test import APIClient

    api = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_token.key}")
    assert api.get("/v1/models").json() == api.get("/v1/models/").json()
