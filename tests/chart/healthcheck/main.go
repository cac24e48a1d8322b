// healthcheck prints what GitOps tools would say about Kubernetes objects, using their own logic.
//
//	healthcheck kstatus < list.json            verdict of kstatus (sigs.k8s.io/cli-utils), as Flux and kpt use it
//	healthcheck argocd SCRIPT.lua < list.json  an Argo CD resource health check, run by gopher-lua as Argo CD does
//
// The input is a JSON object of kind List (kubectl get -o json); the output is one JSON array of
// {"name", "status", "message", "reason"}, in the input's order.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: healthcheck kstatus | healthcheck argocd SCRIPT.lua (objects as a JSON List on stdin)")
	}
	objects := readList(os.Stdin)
	var evaluate func(map[string]interface{}) verdict
	switch os.Args[1] {
	case "kstatus":
		evaluate = kstatusVerdict
	case "argocd":
		if len(os.Args) != 3 {
			fail("usage: healthcheck argocd SCRIPT.lua")
		}
		script, err := os.ReadFile(os.Args[2])
		if err != nil {
			fail(err.Error())
		}
		evaluate = func(object map[string]interface{}) verdict { return argocdVerdict(object, string(script)) }
	default:
		fail("unknown command " + os.Args[1])
	}
	verdicts := make([]verdict, 0, len(objects))
	for _, object := range objects {
		result := evaluate(object)
		result.Name = (&unstructured.Unstructured{Object: object}).GetName()
		verdicts = append(verdicts, result)
	}
	if err := json.NewEncoder(os.Stdout).Encode(verdicts); err != nil {
		fail(err.Error())
	}
}

// readList decodes as the API machinery does (integers stay int64), which kstatus relies on.
func readList(input io.Reader) []map[string]interface{} {
	data, err := io.ReadAll(input)
	if err != nil {
		fail("reading stdin: " + err.Error())
	}
	list := &unstructured.UnstructuredList{}
	if err := list.UnmarshalJSON(data); err != nil {
		fail("reading a JSON List from stdin: " + err.Error())
	}
	objects := make([]map[string]interface{}, 0, len(list.Items))
	for _, item := range list.Items {
		objects = append(objects, item.Object)
	}
	return objects
}

func kstatusVerdict(object map[string]interface{}) verdict {
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		fail("kstatus: " + err.Error())
	}
	reason := ""
	for _, condition := range result.Conditions {
		reason = condition.Reason
	}
	return verdict{Status: result.Status.String(), Message: result.Message, Reason: reason}
}

// argocdVerdict runs a health script the way Argo CD's util/lua does: the object as the global `obj`, the
// script's returned table read as {status, message}.
func argocdVerdict(object map[string]interface{}, script string) verdict {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, library := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		state.Push(state.NewFunction(library.open))
		state.Push(lua.LString(library.name))
		state.Call(1, 0)
	}
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		fail("argocd health script: " + err.Error())
	}
	returned, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		fail("argocd health script returned no table")
	}
	return verdict{
		Status:  returned.RawGetString("status").String(),
		Message: returned.RawGetString("message").String(),
	}
}

func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch typed := value.(type) {
	case map[string]interface{}:
		table := state.NewTable()
		for key, item := range typed {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	case []interface{}:
		table := state.NewTable()
		for index, item := range typed {
			table.RawSetInt(index+1, toLua(state, item))
		}
		return table
	case string:
		return lua.LString(typed)
	case bool:
		return lua.LBool(typed)
	case float64:
		return lua.LNumber(typed)
	case int64:
		return lua.LNumber(typed)
	case nil:
		return lua.LNil
	default:
		fail(fmt.Sprintf("unexpected JSON value %T", value))
		return lua.LNil
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "healthcheck:", message)
	os.Exit(2)
}
