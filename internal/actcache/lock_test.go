//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package actcache

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
)

// TestHelperBuild is not a test: run with ACTCACHE_TEST_BUILD=DIR, it
// stands in for a `cache build` in another process that writes shard 0
// of a build into DIR, begins shard 1 (a temporary file) and says
// "writing" until its stdin closes or it is killed.
func TestHelperBuild(t *testing.T) {
	dir := os.Getenv("ACTCACHE_TEST_BUILD")
	if dir == "" {
		t.Skip("a helper process for TestBuildsInTwoProcesses")
	}
	w, err := Create(dir, wtManifest(6, "a"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	wtWrite(t, w, 0)
	os.WriteFile(atomicfile.TempName(filepath.Join(dir, ShardName(1))), []byte("half a shard"), 0o644)
	fmt.Println("writing")
	bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// Rows 1 and 11 of issue 18 across processes: a build into a directory
// that another process's build is writing is refused, naming that
// process; once it is killed (kill -9), the next build takes its lock
// over with a notice, removes the temporary file it left, and resumes.
func TestBuildsInTwoProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBuild$")
	cmd.Env = append(os.Environ(), "ACTCACHE_TEST_BUILD="+dir)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "writing\n" {
		t.Fatalf("the other build said %q", line)
	}
	host, _ := os.Hostname()
	_, err := Create(dir, wtManifest(6, "b"))
	mustContain(t, "Create while another process builds", err, fmt.Sprintf("%s is being written by pid %d on host %s (ctxdep cache build, since ", dir, cmd.Process.Pid, host))

	cmd.Process.Kill()
	cmd.Wait()
	var got notices
	w, err := CreateWith(dir, wtManifest(6, "a"), CreateOptions{Notice: got.add})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !got.has(fmt.Sprintf("taking over the lock left by pid %d on host %s", cmd.Process.Pid, host), "which is no longer running") ||
		!got.has("removed 1 temporary file(s)", ".shard-00001.safetensors.tmp-") {
		t.Errorf("notices %q", got)
	}
	if !w.Has(0) || w.Has(1) {
		t.Error("the build does not resume from the killed one's shard 0")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("%s is left", e.Name())
		}
	}
}
