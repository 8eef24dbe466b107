#!/usr/bin/env python3
"""Throughput of `minimindv serve`: N jobs over the 16 images of ../shared/minimind/images, per --batch.

For each batch size: a fresh spool, database and embedding cache; the daemon is started and waited for
(READY in its log), then all jobs are dropped into incoming/ at once (directory protocol: tmp/ then
rename). Reports jobs/s (jobs / (last finished_at - first submitted_at)), p50/p95 latency from
submit to result (finished_at - submitted_at, both from the jobs table) and the embedding-cache hit
rate (sum of cache_hits / images); the vision and prefill seconds summed over jobs (each job's share of
batched passes) and how many jobs reused an earlier prompt's beginning (the daemon's log). Not a test: run it on a quiet machine with a release build.

  swift build -c release --product minimindv
  python3 Tools/serve-bench/serve_bench.py --model M.gguf --batch 1 --batch 8
"""
import argparse
import datetime
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def run(binary, model, batch, jobs, images, max_tokens, threads):
    work = tempfile.mkdtemp(prefix="serve-bench-")
    try:
        for sub in ["tmp", "incoming", "active", "done", "failed"]:
            os.makedirs(os.path.join(work, "spool", sub))
        log_path = os.path.join(work, "serve.log")
        command = [os.path.abspath(binary), "serve", "--spool", "spool", "--db", "results.sqlite", "--cache-dir", "cache",
                   "--model", model, "--batch", str(batch), "--no-keep-done"]
        if threads:
            command += ["--threads", str(threads)]
        with open(log_path, "w") as log:
            daemon = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 120
        while "] ready" not in open(log_path).read():
            if daemon.poll() is not None or time.time() > deadline:
                sys.exit(f"serve did not start:\n{open(log_path).read()}")
            time.sleep(0.05)

        for n in range(jobs):
            job_id = f"bench-{n:03d}"
            folder = os.path.join(work, "spool", "tmp", job_id)
            os.makedirs(folder)
            image = images[n % len(images)]
            shutil.copyfile(image, os.path.join(folder, "image.jpg"))
            with open(os.path.join(folder, "job.json"), "w") as f:
                f.write('{"question": "Describe this picture.", "images": ["image.jpg"], '
                        f'"max_tokens": {max_tokens}, "temperature": 0}}')
            os.rename(folder, os.path.join(work, "spool", "incoming", job_id))

        database = os.path.join(work, "results.sqlite")
        deadline = time.time() + 3600
        while True:
            time.sleep(0.2)
            if os.path.exists(database):
                with sqlite3.connect(database) as db:
                    finished = db.execute("SELECT count(*) FROM jobs WHERE status IN ('done', 'failed')").fetchone()[0]
                if finished == jobs:
                    break
            if daemon.poll() is not None or time.time() > deadline:
                sys.exit(f"serve stopped or timed out:\n{open(log_path).read()}")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)

        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT status, submitted_at, finished_at, cache_hits, output_tokens, vision_ms, "
                              "prefill_ms, decode_ms FROM jobs").fetchall()
        failed = [r for r in rows if r[0] != "done"]
        if failed:
            sys.exit(f"{len(failed)} jobs failed")
        submitted = [parse_time(r[1]) for r in rows]
        finished = [parse_time(r[2]) for r in rows]
        latencies = [f - s for s, f in zip(submitted, finished)]
        wall = max(finished) - min(submitted)
        log = open(log_path).read()
        reused = [int(part.split("=")[1]) for part in log.split() if part.startswith("reused_prompt_tokens=")]
        return {
            "vision_s": sum(r[5] or 0 for r in rows) / 1000,
            "prefill_s": sum(r[6] or 0 for r in rows) / 1000,
            "reused": sum(1 for n in reused if n > 0),
            "batch": batch,
            "jobs_per_s": jobs / wall,
            "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95),
            "hit_rate": sum(r[3] for r in rows) / jobs,
            "tokens": sum(r[4] for r in rows),
            "tokens_per_s": sum(r[4] for r in rows) / wall,
            "wall_s": wall,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "minimindv"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, action="append", help="repeat; default 1 and 8")
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--images", default=os.path.join(os.path.dirname(ROOT), "shared", "minimind", "images"))
    args = parser.parse_args()

    images = sorted(os.path.join(args.images, name) for name in os.listdir(args.images) if name.endswith(".jpg"))[:16]
    print(f"model {args.model}, {args.jobs} jobs over {len(images)} images, max_tokens {args.max_tokens} (greedy), "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print("| batch | jobs/s | p50 latency s | p95 latency s | cache hit rate | output tokens/s | wall s | vision s | prefill s | prompts reused |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for batch in args.batch or [1, 8]:
        r = run(args.binary, os.path.abspath(args.model), batch, args.jobs, images, args.max_tokens, args.threads)
        print(f"| {r['batch']} | {r['jobs_per_s']:.2f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['hit_rate']:.2f} | "
              f"{r['tokens_per_s']:.1f} | {r['wall_s']:.1f} | {r['vision_s']:.1f} | {r['prefill_s']:.1f} | {r['reused']} |",
              flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
