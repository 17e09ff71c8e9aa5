import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.wire.message.MongoQuery;
import io.netty.channel.Channel;
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
        MongoServer server = new MongoServer(new PinningBackend(store));
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
    static final class PinningBackend extends H2Backend {
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
}
