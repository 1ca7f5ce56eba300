# Decode-only ceiling: librdkafka consumer (confluent-kafka) reading every message of the topic,
# values joined as NDJSON and decoded by Polars with the same schema. Prints rows and CPU seconds.
import sys, os, time, resource
import polars as pl
from confluent_kafka import Consumer, TopicPartition
bs, topic = sys.argv[1], sys.argv[2]
c = Consumer({"bootstrap.servers": bs, "group.id": "baseline", "enable.auto.commit": False, "fetch.wait.max.ms": 10})
ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
c.assign([TopicPartition(topic, p, 0) for p in range(3)])
t0 = time.time(); vals = []; n = 0; idle = 0
while idle < 20:
    ms = c.consume(10000, 0.1)
    if not ms: idle += 1; continue
    idle = 0
    vals.extend(m.value() for m in ms if not m.error())
schema = {"order_id": pl.String, "customer_id": pl.Int64, "placed_at": pl.String, "total": pl.Float64, "note": pl.String}
df = pl.read_ndjson(b"\n".join(vals), schema=schema).with_columns(pl.col("placed_at").str.to_datetime(time_zone="UTC"))
wall = time.time() - t0 - 2.0  # minus the idle polls that end the read
cpu = resource.getrusage(resource.RUSAGE_SELF); cpu = cpu.ru_utime + cpu.ru_stime
print(f"baseline: {df.height} rows, wall {wall:.2f} s, {cpu:.2f} CPU-s, {df.height/cpu:,.0f} rows/CPU-s, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MB")
sys.stdout.flush(); os._exit(0)
