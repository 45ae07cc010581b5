// Command kube-requestinfo prints what Kubernetes itself makes of request URLs, so that pamgate's own parser
// (src/proxy/kubernetes/request-info.ts) can be checked against it: test/unit/kube-request-info.test.ts feeds it
// the shared case table (test/fixtures/kubernetes/request-info-cases.json) on stdin, as a JSON array of
// {method, url}, and reads one JSON object per case, in order, on stdout:
//
//	{"unparsable": "..."}            net/http's parser rejects the request target (the server answers 400)
//	{"error": "...", "info": {...}}  RequestInfoFactory fails (the apiserver answers 500)
//	{"info": {...}, "connect": {...}} the attributes authorization sees
//
// The URL goes through url.ParseRequestURI, as net/http's server parses a request line, and then through the
// apiserver's RequestInfoFactory configured as kube-apiserver configures it (prefixes "api" and "apis", "api"
// without groups). "connect" holds the pods/exec, pods/attach and pods/portforward options decoded with the
// apimachinery conversions the generated url.Values conversions of k8s.io/kubernetes use (a bool is false only
// when absent, "0" or "false"; ports are comma-split unsigned 16-bit numbers), since k8s.io/kubernetes itself
// cannot be a dependency of a small module.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
)

type input struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type connect struct {
	Command   []string `json:"command,omitempty"`
	Container string   `json:"container"`
	Stdin     bool     `json:"stdin"`
	Stdout    bool     `json:"stdout"`
	Stderr    bool     `json:"stderr"`
	TTY       bool     `json:"tty"`
	Ports     []int32  `json:"ports,omitempty"`
	Error     string   `json:"error,omitempty"`
}

type output struct {
	Unparsable string               `json:"unparsable,omitempty"`
	Error      string               `json:"error,omitempty"`
	Info       *request.RequestInfo `json:"info,omitempty"`
	Connect    *connect             `json:"connect,omitempty"`
}

func main() {
	// RequestInfoFactory logs (klog) when list options fail to decode; that is expected for some cases.
	logFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(logFlags)
	_ = logFlags.Parse([]string{"-logtostderr=false", "-stderrthreshold=FATAL"})
	klog.SetOutput(io.Discard)

	var cases []input
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "kube-requestinfo: reading cases:", err)
		os.Exit(2)
	}
	factory := &request.RequestInfoFactory{
		APIPrefixes:          sets.NewString("api", "apis"),
		GrouplessAPIPrefixes: sets.NewString("api"),
	}
	out := make([]output, 0, len(cases))
	for _, c := range cases {
		out = append(out, run(factory, c))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "kube-requestinfo:", err)
		os.Exit(2)
	}
}

func run(factory *request.RequestInfoFactory, c input) output {
	u, err := url.ParseRequestURI(c.URL)
	if err != nil {
		return output{Unparsable: err.Error()}
	}
	info, err := factory.NewRequestInfo(&http.Request{Method: c.Method, URL: u, RequestURI: c.URL})
	o := output{Info: info}
	if err != nil {
		o.Error = err.Error()
		return o
	}
	if info.IsResourceRequest && info.APIGroup == "" && info.Resource == "pods" {
		switch info.Subresource {
		case "exec", "attach", "portforward":
			o.Connect = connectOptions(u.Query())
		}
	}
	return o
}

// connectOptions decodes the fields of PodExecOptions, PodAttachOptions and PodPortForwardOptions the way
// the generated autoConvert_url_Values_To_v1_Pod*Options functions do.
func connectOptions(q url.Values) *connect {
	c := &connect{}
	flags := map[string]*bool{"stdin": &c.Stdin, "stdout": &c.Stdout, "stderr": &c.Stderr, "tty": &c.TTY}
	for name, dst := range flags {
		if values, ok := q[name]; ok && len(values) > 0 {
			_ = runtime.Convert_Slice_string_To_bool(&values, dst, nil)
		}
	}
	if values, ok := q["container"]; ok && len(values) > 0 {
		_ = runtime.Convert_Slice_string_To_string(&values, &c.Container, nil)
	}
	c.Command = q["command"]
	if values, ok := q["ports"]; ok && len(values) > 0 {
		if err := metav1.Convert_Slice_string_To_Slice_int32(&values, &c.Ports, nil); err != nil {
			c.Error = err.Error()
		}
	}
	return c
}
