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
