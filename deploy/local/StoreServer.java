import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.wire.message.MongoQuery;
import io.netty.channel.Channel;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import org.h2.mvstore.MVStore;

/**
 * Runs mongo-java-server on an H2 MVStore file: the local MongoDB-protocol store.
 * Usage: java -cp 'libs/*' [-Dstore.cacheMb=N] [-Dstore.commitMs=N] [-Dstore.retentionMs=N]
 *     StoreServer.java HOST PORT FILE
 */
public class StoreServer {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: StoreServer HOST PORT FILE");
            System.exit(2);
        }
        MVStore.Builder builder = new MVStore.Builder().fileName(args[2]);
        // Pages cached in memory (H2's default 16 MB when unset).
        Integer cacheMb = Integer.getInteger("store.cacheMb");
        if (cacheMb != null) {
            builder.cacheSize(cacheMb);
        }
        MVStore store = builder.open();
        // How long a chunk's space stays unused after the chunk was written (H2's default
        // 45 s when unset): the window in which the file system is trusted to flush it. It
        // does not protect a long read, see PinningBackend.
        Integer retention = Integer.getInteger("store.retentionMs");
        if (retention != null) {
            store.setRetentionTime(retention);
        }
        // How often the store commits in the background (H2's default 1 s when unset): a
        // kill -9 loses what was acknowledged since the last commit.
        Integer commit = Integer.getInteger("store.commitMs");
        if (commit != null) {
            store.setAutoCommitDelay(commit);
        }
        MongoServer server = new MongoServer(new CountingBackend(store));
        // A clean shutdown flushes the MVStore, so SIGTERM keeps the data.
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown));
        server.bind(args[0], Integer.parseInt(args[1]));
        System.out.println("store listening on " + args[0] + ":" + args[1]);
        Thread.currentThread().join();
    }

    /**
     * Holds the MVStore version current when a command starts until the command ends.
     *
     * A query walks the collection's B-tree from the root it found at its start, while
     * compaction (and writes, which `count` does not wait for) move live pages out of old
     * chunks into new ones. MVStore drops a chunk
     * once no version it keeps uses it, and it keeps only the last few versions (one per
     * commit, about a second apart) plus any version registered as in use: the retention
     * time counts from a chunk's creation, not from when it went dead. So a scan longer than
     * a few commits read pages from chunks already dropped ("Chunk N not found"). Registering
     * the version is how H2's own transactions keep their snapshot readable. The price: while
     * a command runs, chunks that die meanwhile keep their space, so the file grows by what
     * is written during a long scan.
     */
    static class PinningBackend extends H2Backend {
        private final MVStore store;

        PinningBackend(MVStore store) {
            super(store);
            this.store = store;
        }

        @Override
        public Document handleCommand(Channel channel, String database, String command, Document query) {
            MVStore.TxCounter pin = store.registerVersionUsage();
            try {
                return super.handleCommand(channel, database, command, query);
            } finally {
                store.deregisterVersionUsage(pin);
            }
        }

        @Override
        public QueryResult handleQuery(MongoQuery query) {
            MVStore.TxCounter pin = store.registerVersionUsage();
            try {
                return super.handleQuery(query);
            } finally {
                store.deregisterVersionUsage(pin);
            }
        }
    }

    /**
     * Counts the commands on each collection and the time they took, and answers MongoDB's
     * `top` admin command with them (https://www.mongodb.com/docs/manual/reference/command/top/):
     * per namespace, {count, time in microseconds} of queries, getmore, insert, update, remove
     * and other commands, and their total. mongo-java-server answers neither `top` nor the
     * `opcounters` of `serverStatus`; the benchmark reads a run's store operations here, by
     * its database's namespaces, so other databases' work on a shared store stays out.
     *
     * Only commands count: drivers since MongoDB 3.6 send every operation as one (the legacy
     * OP_QUERY path, `handleQuery`, carries only the connection handshake). A dropped database
     * takes its namespaces' counts with it, as in MongoDB, so tests that each use a database
     * of their own leave nothing behind.
     */
    static final class CountingBackend extends PinningBackend {
        private static final String[] KINDS = {
            "queries", "getmore", "insert", "update", "remove", "commands"
        };
        // Per namespace: count and microseconds of each of KINDS, in that order.
        private final Map<String, LongAdder[]> namespaces = new ConcurrentHashMap<>();

        CountingBackend(MVStore store) {
            super(store);
        }

        @Override
        public Document handleCommand(Channel channel, String database, String command, Document query) {
            if (database.equals("admin") && command.equalsIgnoreCase("top")) {
                return top();
            }
            // A collection's commands name it as their value; getMore in a field of its own.
            Object collection =
                command.equalsIgnoreCase("getMore") ? query.get("collection") : query.get(command);
            if (!(collection instanceof String)) {
                return super.handleCommand(channel, database, command, query);
            }
            long started = System.nanoTime();
            try {
                return super.handleCommand(channel, database, command, query);
            } finally {
                LongAdder[] counts =
                    namespaces.computeIfAbsent(database + "." + collection, name -> adders());
                int kind = kind(command);
                counts[2 * kind].increment();
                counts[2 * kind + 1].add((System.nanoTime() - started) / 1000);
            }
        }

        @Override
        public void dropDatabase(String database) {
            super.dropDatabase(database);
            namespaces.keySet().removeIf(name -> name.startsWith(database + "."));
        }

        private static int kind(String command) {
            switch (command.toLowerCase()) {
                case "find":
                    return 0;
                case "getmore":
                    return 1;
                case "insert":
                    return 2;
                case "update":
                    return 3;
                case "delete":
                    return 4;
                default:
                    return 5;
            }
        }

        private static LongAdder[] adders() {
            LongAdder[] counts = new LongAdder[2 * KINDS.length];
            for (int i = 0; i < counts.length; i++) {
                counts[i] = new LongAdder();
            }
            return counts;
        }

        private Document top() {
            Document totals = new Document("note", "all times in microseconds");
            namespaces.forEach((name, counts) -> {
                Document entry = new Document();
                long count = 0;
                long time = 0;
                for (int kind = 0; kind < KINDS.length; kind++) {
                    long kindCount = counts[2 * kind].sum();
                    long kindTime = counts[2 * kind + 1].sum();
                    entry.append(
                        KINDS[kind], new Document("time", kindTime).append("count", kindCount));
                    count += kindCount;
                    time += kindTime;
                }
                entry.append("total", new Document("time", time).append("count", count));
                totals.append(name, entry);
            });
            return new Document("totals", totals).append("ok", 1.0);
        }
    }
}
