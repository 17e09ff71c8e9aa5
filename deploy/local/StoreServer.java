import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.h2.H2Backend;

/**
 * Runs mongo-java-server on an H2 MVStore file: the local MongoDB-protocol store.
 * Usage: java -cp 'libs/*' StoreServer.java HOST PORT FILE
 */
public class StoreServer {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: StoreServer HOST PORT FILE");
            System.exit(2);
        }
        MongoServer server = new MongoServer(new H2Backend(args[2]));
        // A clean shutdown flushes the MVStore, so SIGTERM keeps the data.
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown));
        server.bind(args[0], Integer.parseInt(args[1]));
        System.out.println("store listening on " + args[0] + ":" + args[1]);
        Thread.currentThread().join();
    }
}
