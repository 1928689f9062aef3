"""Masking, third round: a secret is masked in every spelling a notebook, a header or a page can give it, in every
output type and in notebook metadata; and the usual names of secrets are recognised."""
import base64
import binascii
import html
import json
from urllib.parse import quote

import nbformat
import pytest

from mlops_nb.masking import REDACTED, scrub, scrub_outputs, secret_values

SECRET = 's3cr3t/Pa+ss\'w"rd'
SPELLINGS = {
    'base64': base64.b64encode(SECRET.encode()).decode(),
    'basic auth header': 'Authorization: Basic ' + base64.b64encode(f'deploy:{SECRET}'.encode()).decode(),
    'urlsafe base64': base64.urlsafe_b64encode(f'xy{SECRET}'.encode()).decode(),
    'hex': binascii.hexlify(SECRET.encode()).decode(),
    'HEX': binascii.hexlify(SECRET.encode()).decode().upper(),
    'repr': repr(SECRET),
    "quote() with '/' safe": quote(SECRET),
    'lowercase %xx': quote(SECRET, safe='').lower(),
    'numeric entities': SECRET.replace("'", '&#39;').replace('"', '&#34;'),
    'hex entities': html.escape(SECRET).replace('&#x27;', '&#X27;'),
    'upper-cased': SECRET.upper(),
    'a line break inside': SECRET[:7] + '\n' + SECRET[7:],
    'JSON in JSON': json.dumps(json.dumps(SECRET)),
}


@pytest.mark.parametrize('form', SPELLINGS)
def test_every_spelling_of_a_secret_is_masked(form):
    text = f'before {SPELLINGS[form]} after'
    masked = scrub(text, [SECRET])
    assert REDACTED in masked and masked.startswith('before') and masked.endswith('after'), (form, masked)
    assert 'Pa+ss' not in masked and 'pa+ss' not in masked.lower(), masked


def test_nothing_else_is_masked():
    text = 'the s3cr3t word alone, a picture iVBORw0KGgo= and the hex 00ff are left'
    assert scrub(text, [SECRET]) == text


@pytest.mark.parametrize('name', ['SLACK_WEBHOOK_URL', 'SENTRY_DSN', 'GH_PAT', 'DB_AUTH', 'API_KEY', 'AUTH_HEADER'])
def test_the_usual_names_of_secrets_are_recognised(name):
    assert secret_values({name: 'value-1234'}) == ['value-1234']


@pytest.mark.parametrize('name', ['PATH', 'GIT_AUTHOR_NAME', 'PATH_INFO', 'HOME'])
def test_other_names_are_not(name):
    assert secret_values({name: 'value-1234'}) == []


def test_every_output_type_and_metadata_is_masked_and_pictures_stay_whole():
    nb = nbformat.v4.new_notebook(metadata={'papermill': {'parameters': {'note': SECRET}}}, cells=[
        nbformat.v4.new_code_cell('x', metadata={'tags': [SECRET]}, outputs=[
            nbformat.v4.new_output('display_data', data={
                'application/vnd.dataresource+json': {'data': [{'password': SECRET}], 'schema': {}},
                'application/vnd.custom+json': {'deep': [[SECRET.upper()]]},
                'text/markdown': f'`{SECRET}`',
                'image/png': base64.b64encode(b'\x89PNG' + SECRET.encode()).decode()})])])
    assert scrub_outputs(nb, [SECRET])
    text = json.dumps(nb)
    assert 'Pa+ss' not in text.replace(base64.b64encode(b'\x89PNG' + SECRET.encode()).decode(), '')
    assert nb.cells[0].outputs[0].data['image/png'] == base64.b64encode(b'\x89PNG' + SECRET.encode()).decode()
    assert nb.metadata['papermill']['parameters']['note'] == REDACTED and nb.cells[0].metadata['tags'] == [REDACTED]
