import sys, json, os, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bs, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
a = AdminClient({"bootstrap.servers": bs})
for f in a.create_topics([NewTopic(topic, 3, 1)]).values(): f.result()
p = Producer({"bootstrap.servers": bs, "linger.ms": 50, "batch.num.messages": 10000, "queue.buffering.max.messages": 1000000})
pad = "x" * 80
t = time.time()
for i in range(n):
    v = '{"order_id": "o%09d", "customer_id": %d, "placed_at": "2024-03-02T10:00:00Z", "total": %d.25, "note": "%s"}' % (i, i % 1000, i, pad)
    while True:
        try: p.produce(topic, key=b"k%d" % i, value=v); break
        except BufferError: p.poll(0.01)
    if i % 10000 == 0: p.poll(0)
p.flush(); print("produced", n, "in", round(time.time()-t,1), "s, value bytes", len(v)); sys.stdout.flush(); os._exit(0)
