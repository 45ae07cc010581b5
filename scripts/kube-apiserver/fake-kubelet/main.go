// fake-kubelet is a TEST STAND-IN for the kubelet's streaming endpoints, for pamgate's Kubernetes integration
// tests. It is not a kubelet: it runs no pods, reports no status and talks to no container runtime. It only
// answers what kube-apiserver proxies to a node for `pods/exec` and `pods/portforward`, by running the
// requested command as a local child process (in --workdir) and by dialing 127.0.0.1:<port>.
//
// Why Go and not TypeScript: kube-apiserver 1.34 does not pass a kubectl WebSocket (v5.channel.k8s.io) exec
// through to the node. It terminates it and opens a SPDY/3.1 connection to the kubelet instead
// (TranslateStreamCloseWebsocketRequests, beta and on since 1.30); SPDY clients and v4-and-older WebSocket
// clients (@kubernetes/client-node) are proxied through unchanged. So a stand-in must speak SPDY/3.1 and the
// WebSocket channel protocols, with their error/status and resize streams, exactly as the kubelet does. This
// program gets that by serving with the kubelet's own stream code (k8s.io/kubelet/pkg/cri/streaming, the
// library the CRI streaming servers use), built from the same go.mod as kube-apiserver, so the wire side is
// the real thing and only the "container" is fake.
//
// It serves TLS and requires a client certificate from --client-ca, as a kubelet does for the apiserver's
// --kubelet-client-certificate. Paths, as kube-apiserver builds them (pkg/registry/core/pod/strategy.go):
//
//	/exec/{namespace}/{pod}/{container}?command=...&stdin=1&stdout=1&stderr=1&tty=1
//	/portForward/{namespace}/{pod}            (SPDY: the port comes in each stream's headers)
//	/healthz
//
// Every request is logged to stderr as one JSON line {"fakeKubelet":...}, so that a test can show which
// command reached the node and which client certificate the apiserver presented. Once listening it prints
// one line to stdout: {"listening":"127.0.0.1:PORT"}.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
	remotecommandserver "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

var (
	listen   = flag.String("listen", "127.0.0.1:0", "address to listen on (loopback only in tests)")
	certFile = flag.String("tls-cert", "", "serving certificate (must name the Node's InternalIP, e.g. 127.0.0.1)")
	keyFile  = flag.String("tls-key", "", "serving key")
	caFile   = flag.String("client-ca", "", "CA that signed kube-apiserver's --kubelet-client-certificate")
	workdir  = flag.String("workdir", "", "working directory of exec'd commands (default: current)")
)

// Same timeouts as the CRI streaming server's defaults (k8s.io/kubelet/pkg/cri/streaming.DefaultConfig).
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommandconsts.DefaultStreamCreationTimeout
)

func logEvent(fields map[string]any) {
	b, _ := json.Marshal(map[string]any{"fakeKubelet": fields})
	fmt.Fprintln(os.Stderr, string(b))
}

// localRuntime runs "container" commands as children of this process.
type localRuntime struct{}

func (localRuntime) ExecInContainer(ctx context.Context, _ string, _ types.UID, _ string, cmd []string,
	in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration,
) error {
	if len(cmd) == 0 {
		return errors.New("fake-kubelet: no command")
	}
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Dir = *workdir
	c.Env = append(os.Environ(), "FAKE_KUBELET=1")
	var err error
	if tty {
		err = runWithPTY(c, in, out, resize)
	} else {
		err = runPlain(c, in, out, errw)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		// ServeExec turns a utilexec.ExitError into the NonZeroExitCode status that kubectl exits with.
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

func runPlain(c *exec.Cmd, in io.Reader, out, errw io.WriteCloser) error {
	if out != nil {
		c.Stdout = out
	}
	if errw != nil {
		c.Stderr = errw
	}
	if in != nil {
		// Through a pipe rather than c.Stdin = in: Wait would otherwise block on a client that never closes
		// stdin after the command has exited.
		w, err := c.StdinPipe()
		if err != nil {
			return err
		}
		go func() { _, _ = io.Copy(w, in); _ = w.Close() }()
	}
	return c.Run()
}

func runWithPTY(c *exec.Cmd, in io.Reader, out io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
	f, err := pty.Start(c)
	if err != nil {
		return err
	}
	defer f.Close()
	go func() {
		for size := range resize {
			_ = pty.Setsize(f, &pty.Winsize{Rows: size.Height, Cols: size.Width})
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(f, in) }()
	}
	var wg sync.WaitGroup
	if out != nil {
		wg.Add(1)
		// Reading the pty master ends with EIO once the child side is closed; that is the normal end.
		go func() { defer wg.Done(); _, _ = io.Copy(out, f) }()
	}
	err = c.Wait()
	_ = f.Close()
	wg.Wait()
	return err
}

// PortForward connects the forwarded stream to 127.0.0.1:port, where a test runs its "pod's" server.
func (localRuntime) PortForward(ctx context.Context, _ string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("fake-kubelet: port %d: %w", port, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	<-done
	return nil
}

func peer(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0].Subject.String()
	}
	return ""
}

func handler() http.Handler {
	rt := localRuntime{}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	// The kubelet also accepts /exec/{ns}/{pod}/{uid}/{container}; kube-apiserver sends the 3-segment form.
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		opts, err := remotecommandserver.NewOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cmd := r.URL.Query()["command"]
		logEvent(map[string]any{
			"kind": "exec", "namespace": r.PathValue("namespace"), "pod": r.PathValue("pod"),
			"container": r.PathValue("container"), "command": cmd, "tty": opts.TTY, "stdin": opts.Stdin,
			"upgrade": r.Header.Get("Upgrade"), "protocols": r.Header.Values("X-Stream-Protocol-Version"),
			"wsProtocols": r.Header.Values("Sec-Websocket-Protocol"), "client": peer(r),
		})
		remotecommandserver.ServeExec(w, r, rt, r.PathValue("pod"), "", r.PathValue("container"), cmd, opts,
			streamIdleTimeout, streamCreationTimeout, remotecommandconsts.SupportedStreamingProtocols)
	})
	mux.HandleFunc("/portForward/{namespace}/{pod}", func(w http.ResponseWriter, r *http.Request) {
		opts, err := portforward.NewV4Options(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		logEvent(map[string]any{
			"kind": "portforward", "namespace": r.PathValue("namespace"), "pod": r.PathValue("pod"),
			"ports": opts.Ports, "upgrade": r.Header.Get("Upgrade"), "client": peer(r),
		})
		portforward.ServePortForward(w, r, rt, r.PathValue("pod"), "", opts, streamIdleTimeout,
			streamCreationTimeout, portforward.SupportedProtocols)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		logEvent(map[string]any{"kind": "unsupported", "method": r.Method, "path": r.URL.Path, "client": peer(r)})
		http.Error(w, "fake-kubelet (a test stand-in) serves only exec and portForward; not "+r.URL.Path,
			http.StatusNotImplemented)
	})
	return mux
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *certFile == "" || *keyFile == "" || *caFile == "" {
		log.Fatal("fake-kubelet: --tls-cert, --tls-key and --client-ca are required")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("fake-kubelet: %v", err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatalf("fake-kubelet: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("fake-kubelet: no certificates in %s", *caFile)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("fake-kubelet: %v", err)
	}
	srv := &http.Server{
		Handler: handler(),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			// SPDY and WebSocket upgrades are HTTP/1.1 only, as on the real kubelet.
			NextProtos: []string{"http/1.1"},
			MinVersion: tls.VersionTLS12,
		},
		ReadHeaderTimeout: 30 * time.Second,
	}
	b, _ := json.Marshal(map[string]string{"listening": ln.Addr().String()})
	fmt.Println(string(b))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("fake-kubelet: %v", strings.TrimSpace(err.Error()))
	}
}
