"""Serializers schemathesis lacks for our ingest media types, so fuzzing covers them too."""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    rows = value if isinstance(value, list) else [value]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@schemathesis.deserializer("application/x-ndjson")
def ndjson_rows(ctx, response):
    text = response.content.decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@schemathesis.serializer("application/x-protobuf")
def protobuf(ctx, value):
    """Generated bodies are arbitrary bytes here: the receivers must answer 400, never 5xx."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()
