"""A regsweep worker in Python: proof that another language can join.

Generates the stubs from proto/ with grpcio-tools, connects to the
scheduler's WorkerService.Connect stream, says Hello with capacity for
`sleep`, grants one credit, runs the one job it is assigned (logging a
line and reporting `done` with a result), then closes the stream.

Usage: python worker.py --scheduler 127.0.0.1:7070 --proto-dir proto
"""

import argparse
import importlib
import pathlib
import queue
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc


def generate(proto_dir: pathlib.Path, out: pathlib.Path) -> None:
    includes = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(proto_dir)) for p in (proto_dir / "regsweep" / "v1").glob("*.proto"))
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{includes}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scheduler", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--name", default="python-worker")
    args = parser.parse_args()

    out = pathlib.Path(tempfile.mkdtemp(prefix="regsweep-py-"))
    generate(pathlib.Path(args.proto_dir), out)
    sys.path.insert(0, str(out))
    worker_pb2 = importlib.import_module("regsweep.v1.worker_pb2")
    worker_grpc = importlib.import_module("regsweep.v1.worker_pb2_grpc")
    job_pb2 = importlib.import_module("regsweep.v1.job_pb2")

    outbox: "queue.Queue" = queue.Queue()

    def requests():
        while True:
            message = outbox.get()
            if message is None:
                return
            yield message

    outbox.put(worker_pb2.ConnectRequest(hello=worker_pb2.Hello(name=args.name, version="py-0.1", capacity={"sleep": 1})))
    channel = grpc.insecure_channel(args.scheduler)
    stream = worker_grpc.WorkerServiceStub(channel).Connect(requests())
    for response in stream:
        kind = response.WhichOneof("message")
        if kind == "welcome":
            print(f"welcome {response.welcome.worker_id}", flush=True)
            outbox.put(worker_pb2.ConnectRequest(credit=worker_pb2.Credit(kind="sleep", n=1)))
        elif kind == "assign":
            job = response.assign.job
            print(f"assigned job {job.id} attempt {job.attempt}", flush=True)
            outbox.put(worker_pb2.ConnectRequest(job_update=worker_pb2.JobUpdate(
                job_id=job.id, attempt=job.attempt, status=job_pb2.JOB_STATUS_RUNNING)))
            line = job_pb2.JobLogLine(attempt=job.attempt, text="hello from python")
            line.time.GetCurrentTime()
            outbox.put(worker_pb2.ConnectRequest(log_chunk=worker_pb2.LogChunk(
                job_id=job.id, attempt=job.attempt, seq=0, lines=[line])))
            update = worker_pb2.JobUpdate(job_id=job.id, attempt=job.attempt, status=job_pb2.JOB_STATUS_DONE, progress=1.0)
            update.result.update({"by": "python", "seconds": job.args["seconds"]})
            outbox.put(worker_pb2.ConnectRequest(job_update=update))
            # Drain: say so, then close our side; the scheduler ends the stream.
            outbox.put(worker_pb2.ConnectRequest(draining=worker_pb2.Draining()))
            outbox.put(None)
        elif kind == "cancel":
            print(f"cancel {response.cancel.job_id}", flush=True)
    print("stream closed", flush=True)


if __name__ == "__main__":
    main()
