"""Starts moto's server with DynamoDB made linearizable.

moto serves requests on threads and does not lock its DynamoDB backend: two racing
TransactWriteItems can both pass their conditions, and a concurrent Query can see an item
that UpdateItem has created with its key only. Real DynamoDB does neither. This launcher
serialises every DynamoDB backend call behind one lock, so conditional writes and
transactions behave atomically as they do on AWS. Other services (SQS long polls) are not
affected.

Each request's access-log line is dropped (werkzeug's INFO): writing it took a tenth of
moto's time under load, and moto answers one DynamoDB request at a time. Warnings and
errors are still logged.
"""

import functools
import inspect
import logging
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_LOCK = threading.RLock()


def _locked(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return fn(*args, **kwargs)

    return wrapper


for _name, _fn in inspect.getmembers(DynamoDBBackend, inspect.isfunction):
    if not _name.startswith("_"):
        setattr(DynamoDBBackend, _name, _locked(_fn))

if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    main(sys.argv[1:])
