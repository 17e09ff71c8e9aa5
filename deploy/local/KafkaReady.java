import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/**
 * Exits 0 once the broker answers an admin call (describeCluster), 1 otherwise.
 * An open port alone does not mean the KRaft controller has elected itself.
 * Usage: java -cp 'libs/*' KafkaReady.java BOOTSTRAP TIMEOUT_SECONDS
 */
public class KafkaReady {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    int nodes = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS).size();
                    if (nodes > 0) {
                        System.exit(0);
                    }
                } catch (Exception e) {
                    // Not up yet: keep asking until the deadline.
                }
                try {
                    Thread.sleep(500);
                } catch (InterruptedException e) {
                    break;
                }
            }
        }
        System.exit(1);
    }
}
