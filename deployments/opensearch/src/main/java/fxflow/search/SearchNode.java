package fxflow.search;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.opensearch.Version;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.bootstrap.BootstrapCheck;
import org.opensearch.bootstrap.BootstrapContext;
import org.opensearch.common.settings.Settings;
import org.opensearch.core.common.transport.BoundTransportAddress;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single-node OpenSearch 2.19 for tests, started from Maven Central jars on the classpath.
 *
 * <p>The tarball's bootstrap (org.opensearch.bootstrap.OpenSearch) refuses to run as root, wants
 * the distribution layout (modules/, plugins/, config/jvm.options) and installs a security
 * manager; this builds a {@link Node} directly through its protected constructor with the
 * plugins we need as classpath plugins (as the test framework's MockNode does). Bootstrap checks
 * are not run: {@code Node.start()} only calls {@link #validateNodeBeforeAcceptingRequests},
 * which is a no-op here (the tarball's Bootstrap overrides it to run them).
 *
 * <p>Options (each also read from a system property {@code -Dsearch.NAME=} or an environment
 * variable {@code SEARCH_NAME}, in that order after the command line):
 * <pre>
 *   --http-port P        HTTP port (9200; 0 = any free port, printed and written to DIR/http.port)
 *   --transport-port P   transport port (0 = any free port)
 *   --data DIR           this instance's folder: path.home; data in DIR/data, logs in DIR/logs
 *   --cluster-name NAME  (fxflow-test)
 *   --node-name NAME     (search-PORT)
 *   --replicas N         replicas of new indices without their own setting (0: one node could never
 *                        assign a replica, so health would stay yellow; 1 is what Elasticsearch does)
 *   -Ekey=value          any other node setting, as OpenSearch's own CLI takes them
 * </pre>
 * Prints {@code listening on http://127.0.0.1:PORT} once the node has started; SIGTERM closes it.
 */
public final class SearchNode extends Node {

    /** Plugins compiled in: HTTP/transport, the common analyzers, scaled_float and friends. */
    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,
        CommonAnalysisPlugin.class,
        MapperExtrasPlugin.class
    );

    SearchNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(environment, plugins, true);
    }

    @Override
    protected void validateNodeBeforeAcceptingRequests(
        BootstrapContext context,
        BoundTransportAddress boundTransportAddress,
        List<BootstrapCheck> checks
    ) {
        // No bootstrap checks: a loopback-only test node (vm.max_map_count, heap size, ...).
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = new LinkedHashMap<>();
        Map<String, String> extra = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("-h") || arg.equals("--help")) {
                usage(System.out);
                return;
            } else if (arg.startsWith("-E")) {
                String kv = arg.length() > 2 ? arg.substring(2) : next(args, ++i, arg);
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    fail("expected -Ekey=value, got " + arg);
                }
                extra.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else if (arg.startsWith("--")) {
                String name = arg.substring(2);
                String value;
                int eq = name.indexOf('=');
                if (eq >= 0) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                } else {
                    value = next(args, ++i, arg);
                }
                if (!List.of("http-port", "transport-port", "data", "cluster-name", "node-name", "replicas").contains(name)) {
                    fail("unknown option --" + name);
                }
                options.put(name, value);
            } else {
                fail("unexpected argument " + arg);
            }
        }

        int httpPort = Integer.parseInt(option(options, "http-port", "9200"));
        String transportPort = option(options, "transport-port", "0");
        Path dir = Paths.get(option(options, "data", "search-data")).toAbsolutePath().normalize();
        String clusterName = option(options, "cluster-name", "fxflow-test");
        String nodeName = option(options, "node-name", "search-" + (httpPort == 0 ? "any" : httpPort));
        int replicas = Integer.parseInt(option(options, "replicas", "0"));

        Path data = dir.resolve("data");
        Path logs = dir.resolve("logs");
        Path config = dir.resolve("config");
        for (Path p : List.of(data, logs, config)) {
            Files.createDirectories(p);
        }
        // Written again once started: a harness may wait for it.
        Files.deleteIfExists(dir.resolve("http.port"));

        Settings.Builder settings = Settings.builder()
            .put("path.home", dir.toString())
            .put("path.data", data.toString())
            .put("path.logs", logs.toString())
            .put("cluster.name", clusterName)
            .put("node.name", nodeName)
            .put("network.host", "127.0.0.1")
            .put("http.port", Integer.toString(httpPort))
            .put("transport.port", transportPort)
            .put("discovery.type", "single-node")
            // Writes logs/http.ports and logs/transport.ports (the bound addresses).
            .put("node.portsfile", true)
            // A test node on a shared, filling disk: the flood-stage watermark would make indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            // Light on a 2-core machine.
            .put("node.processors", Math.min(2, Runtime.getRuntime().availableProcessors()))
            // A small heap: the real-memory parent breaker would refuse bulk requests early.
            .put("indices.breaker.total.use_real_memory", false);
        extra.forEach(settings::put);

        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings.build(),
            Collections.emptyMap(),
            config,
            () -> nodeName
        );

        SearchNode node = new SearchNode(environment, PLUGINS);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                if (!node.awaitClose(15, TimeUnit.SECONDS)) {
                    System.err.println("search node did not close within 15 s");
                }
            } catch (IOException | InterruptedException e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
                LogManager.shutdown();
            }
        }, "search-node-shutdown"));

        try {
            node.start();
        } catch (Throwable e) {
            System.err.println("search node failed to start: " + e);
            e.printStackTrace();
            // The shutdown hook closes what was started.
            System.exit(1);
        }

        // Read from the cluster state's persistent settings only (a node setting is ignored).
        node.client()
            .admin()
            .cluster()
            .prepareUpdateSettings()
            .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", replicas))
            .get();

        int port = node.injector()
            .getInstance(HttpServerTransport.class)
            .boundAddress()
            .publishAddress()
            .getPort();
        Path portFile = dir.resolve("http.port");
        Path tmp = dir.resolve("http.port.tmp");
        Files.write(tmp, (port + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, portFile, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        System.out.println(
            "OpenSearch " + Version.CURRENT + " (cluster " + clusterName + ", node " + nodeName + ", data " + data
                + ") listening on http://127.0.0.1:" + port
        );
        System.out.flush();

        // Keep the JVM alive until SIGTERM/SIGINT (as the distribution's keep-alive thread does).
        stopped.await();
    }

    private static String option(Map<String, String> options, String name, String fallback) {
        String value = options.get(name);
        if (value == null) {
            value = System.getProperty("search." + name.replace('-', '.'));
        }
        if (value == null) {
            value = System.getenv("SEARCH_" + name.replace('-', '_').toUpperCase());
        }
        return value == null || value.isEmpty() ? fallback : value;
    }

    private static String next(String[] args, int i, String option) {
        if (i >= args.length) {
            fail(option + " needs a value");
        }
        return args[i];
    }

    private static void fail(String message) {
        System.err.println("SearchNode: " + message);
        usage(System.err);
        System.exit(2);
    }

    private static void usage(PrintStream out) {
        out.println(
            "usage: java -cp 'fxflow-search-node.jar:lib/*' fxflow.search.SearchNode"
                + " [--http-port P] [--transport-port P] [--data DIR] [--cluster-name NAME] [--node-name NAME]"
                + " [--replicas N] [-Ekey=value ...]"
        );
    }
}
