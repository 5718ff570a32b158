// Command bench-memo measures MeMo validation for `make bench` and prints a
// markdown table: in-process validations per second of a small official
// example, time and peak memory for a ~99 MB message, each beside the floor
// `xmllint --huge --noout --schema` measured in the same run.
//
// Each measurement of ours runs in a child process of this command (the
// "measure" subcommand), so the peak RSS it reports (VmHWM) belongs to that
// one measurement; xmllint's peak comes from its rusage.
//
// Usage (from the repository root, as scripts/bench.sh does):
//
//	bench-memo -tmp DIR
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthub/posthub/memo"
)

// benchNow is the moment the business rules judge the official example
// against: its doNotDeliverUntilDate is 2018-09-15.
var benchNow = time.Date(2018, 6, 1, 12, 0, 0, 0, time.UTC)

func main() {
	log.SetFlags(0)
	if len(os.Args) > 1 && os.Args[1] == "measure" {
		measure(os.Args[2:])
		return
	}
	tmp := flag.String("tmp", os.TempDir(), "scratch directory for the generated files")
	bigMiB := flag.Int64("big", 99, "MiB of base64 content in the large message")
	dur := flag.Duration("dur", 2*time.Second, "how long each throughput measurement runs")
	flag.Parse()
	if err := orchestrate(*tmp, *bigMiB<<20, *dur); err != nil {
		log.Fatal(err)
	}
}

// result is what one "measure" child reports.
type result struct {
	Ops     int     `json:"ops"`
	NsPerOp float64 `json:"nsPerOp"`
	// CPUNsPerOp is user+system CPU time per operation: on a shared machine
	// it is the steadier measure of cost.
	CPUNsPerOp float64 `json:"cpuNsPerOp"`
	HWMKiB     int64   `json:"hwmKiB"`
	Err        string  `json:"err,omitempty"`
}

func orchestrate(tmp string, bigContent int64, dur time.Duration) error {
	small := filepath.Join(tmp, "MeMo_Full_Example.xml")
	if err := writeFullExample(small); err != nil {
		return err
	}
	big := filepath.Join(tmp, "MeMo_big.xml")
	t0 := time.Now()
	if err := writeBig(big, bigContent); err != nil {
		return err
	}
	st, err := os.Stat(big)
	if err != nil {
		return err
	}
	genTime := time.Since(t0)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	run := func(args ...string) (result, error) {
		out, err := exec.Command(self, append([]string{"measure"}, args...)...).Output()
		if err != nil {
			return result{}, fmt.Errorf("measure %v: %w", args, err)
		}
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			return result{}, fmt.Errorf("measure %v: %q: %w", args, out, err)
		}
		if r.Err != "" {
			return r, fmt.Errorf("measure %v: %s", args, r.Err)
		}
		return r, nil
	}
	d := dur.String()
	smallXSD, err := run("-mode", "xsd", "-file", small, "-dur", d)
	if err != nil {
		return err
	}
	smallFull, err := run("-mode", "full", "-file", small, "-dur", d)
	if err != nil {
		return err
	}
	par := strconv.Itoa(runtime.NumCPU())
	smallPar, err := run("-mode", "full", "-file", small, "-dur", d, "-par", par)
	if err != nil {
		return err
	}
	bigXSD, err := run("-mode", "xsd-file", "-file", big, "-n", "3")
	if err != nil {
		return err
	}
	bigFull, err := run("-mode", "full-file", "-file", big, "-n", "3")
	if err != nil {
		return err
	}
	bigReader, err := run("-mode", "full-reader", "-file", big, "-n", "3", "-tmp", tmp)
	if err != nil {
		return err
	}
	xlSmall, err := xmllintPerDoc("schemas/MeMo_core.xsd", small, 2000)
	if err != nil {
		return err
	}
	xlBig, err := xmllintBest("schemas/Version1.2/MeMo_core.xsd", big, 3)
	if err != nil {
		return err
	}

	mb := func(kib int64) string { return fmt.Sprintf("%.0f MB", float64(kib)*1024/1e6) }
	// rate shows operations per CPU-second, the cost, with the wall-clock
	// rate after it (which on a shared machine also measures the neighbours).
	rate := func(cpuNs, ns float64) string { return fmt.Sprintf("%.0f/s (wall %.0f/s)", 1e9/cpuNs, 1e9/ns) }
	secs := func(cpuNs, ns float64) string { return fmt.Sprintf("%.2f s CPU (wall %.2f s)", cpuNs/1e9, ns/1e9) }
	ratio := func(a, b float64) string { return fmt.Sprintf("%.2f×", a/b) }
	size := float64(st.Size())
	rss := func(kib int64) string {
		return fmt.Sprintf("%s (%.2f× file)", mb(kib), float64(kib)*1024/size)
	}
	bigMB := st.Size() / 1e6

	fmt.Printf("MeMo_Full_Example v1.1 (%d bytes); large message: one File of %d MiB base64, %d bytes (generated in %.1f s); GOMAXPROCS %d.\n",
		fileSize(small), bigContent>>20, st.Size(), genTime.Seconds(), runtime.GOMAXPROCS(0))
	fmt.Println("Rates are per CPU-second (user+system of the measuring process), wall-clock in parentheses; ratios compare CPU time.")
	fmt.Println()
	fmt.Println("| measurement | ours | xmllint (floor) | ours / xmllint | target |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| Full_Example, XSD only, 1 goroutine (ValidateSchemaBytes) | %s | %s | %s | |\n",
		rate(smallXSD.CPUNsPerOp, smallXSD.NsPerOp), rate(xlSmall.cpuNs, xlSmall.ns), ratio(smallXSD.CPUNsPerOp, xlSmall.cpuNs))
	fmt.Printf("| Full_Example, full pipeline (one pass: XSD + model + rules), 1 goroutine (ValidateBytes) | %s | %s | %s | ≥ 4,000/s |\n",
		rate(smallFull.CPUNsPerOp, smallFull.NsPerOp), rate(xlSmall.cpuNs, xlSmall.ns), ratio(smallFull.CPUNsPerOp, xlSmall.cpuNs))
	fmt.Printf("| Full_Example, full pipeline, %s goroutines | %s | | | ≥ 1,389/s wall (5 M letters/h) |\n",
		par, rate(smallPar.CPUNsPerOp, smallPar.NsPerOp))
	fmt.Printf("| %d MB, XSD only (ValidateSchemaFile) | %s | %s | %s | |\n",
		bigMB, secs(bigXSD.CPUNsPerOp, bigXSD.NsPerOp), secs(xlBig.cpuNs, xlBig.ns), ratio(bigXSD.CPUNsPerOp, xlBig.cpuNs))
	fmt.Printf("| %d MB, full pipeline (ValidateFile: XSD + ParseFile + rules) | %s | %s | %s | ≤ 1.3× |\n",
		bigMB, secs(bigFull.CPUNsPerOp, bigFull.NsPerOp), secs(xlBig.cpuNs, xlBig.ns), ratio(bigFull.CPUNsPerOp, xlBig.cpuNs))
	fmt.Printf("| %d MB, spool + full pipeline (ValidateReader from a file) | %s | | %s | |\n",
		bigMB, secs(bigReader.CPUNsPerOp, bigReader.NsPerOp), ratio(bigReader.CPUNsPerOp, xlBig.cpuNs))
	fmt.Printf("| %d MB, peak RSS, XSD only | %s | %s | %s | |\n",
		bigMB, rss(bigXSD.HWMKiB), rss(xlBig.maxRSSKiB), ratio(float64(bigXSD.HWMKiB), float64(xlBig.maxRSSKiB)))
	fmt.Printf("| %d MB, peak RSS, full pipeline | %s | %s | %s | ≤ 1.5× file |\n",
		bigMB, rss(bigFull.HWMKiB), rss(xlBig.maxRSSKiB), ratio(float64(bigFull.HWMKiB), float64(xlBig.maxRSSKiB)))
	fmt.Printf("| %d MB, peak RSS, spool + full pipeline | %s | | | ≤ 1.5× file |\n",
		bigMB, rss(bigReader.HWMKiB))
	return nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// writeFullExample writes the official MeMo 1.1 full example with its
// entry points moved to https, so it passes the business rules as well as
// the schema and the measured path is an accepted message.
func writeFullExample(path string) error {
	b, err := os.ReadFile("memo/testdata/samples/v1.1/MeMo_Full_Example.xml")
	if err != nil {
		return err
	}
	b = bytes.ReplaceAll(b, []byte("<memo:url>http://"), []byte("<memo:url>https://"))
	return os.WriteFile(path, b, 0o600)
}

// writeBig streams a MeMo 1.2 whose one File holds content bytes of base64
// in lines of 76 characters.
func writeBig(path string, content int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" memoVersion="1.2">
	<memo:MessageHeader>
		<memo:messageType>DIGITALPOST</memo:messageType>
		<memo:messageUUID>8c2ea15d-61fb-4ba9-9366-42f8b194c114</memo:messageUUID>
		<memo:label>Stor forsendelse</memo:label>
		<memo:Sender>
			<memo:senderID>12345678</memo:senderID>
			<memo:idType>CVR</memo:idType>
			<memo:label>Kommunen</memo:label>
		</memo:Sender>
		<memo:Recipient>
			<memo:recipientID>2211771212</memo:recipientID>
			<memo:idType>CPR</memo:idType>
		</memo:Recipient>
	</memo:MessageHeader>
	<memo:MessageBody>
		<memo:createdDateTime>2018-05-03T12:00:00Z</memo:createdDateTime>
		<memo:MainDocument>
			<memo:File>
				<memo:encodingFormat>application/pdf</memo:encodingFormat>
				<memo:filename>stor.pdf</memo:filename>
				<memo:language>da</memo:language>
				<memo:content>`)
	// "JVBERi0x" is base64 of "%PDF-1", so the content even looks like a PDF
	// to a sniffing rule; the rest is filler.
	first := "JVBERi0x" + strings.Repeat("QUJD", 17) + "\n"
	line := strings.Repeat("QUJD", 19) + "\n"
	w.WriteString(first)
	for n := int64(len(first)); n < content; n += int64(len(line)) {
		w.WriteString(line)
	}
	w.WriteString("</memo:content>\n\t\t\t</memo:File>\n\t\t</memo:MainDocument>\n\t</memo:MessageBody>\n</memo:Message>\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// measure is the child: it validates one file in one way, repeatedly, and
// prints a result with the process's peak RSS.
func measure(args []string) {
	fs := flag.NewFlagSet("measure", flag.ExitOnError)
	mode := fs.String("mode", "full", "xsd | full (in memory), xsd-file | full-file | full-reader")
	file := fs.String("file", "", "the MeMo")
	n := fs.Int("n", 0, "run exactly n times (default: for -dur)")
	dur := fs.Duration("dur", 2*time.Second, "run this long when -n is 0")
	par := fs.Int("par", 1, "goroutines")
	tmp := fs.String("tmp", "", "spool directory for full-reader")
	fs.Parse(args)
	r := result{}
	defer func() {
		r.HWMKiB = vmHWM()
		json.NewEncoder(os.Stdout).Encode(r)
	}()
	v, err := memo.NewValidator(memo.DefaultConfig(), memo.WithSpoolDir(*tmp))
	if err != nil {
		r.Err = err.Error()
		return
	}
	defer v.Close()
	var body []byte
	if *mode == "xsd" || *mode == "full" {
		if body, err = os.ReadFile(*file); err != nil {
			r.Err = err.Error()
			return
		}
	}
	once := func() error {
		switch *mode {
		case "xsd":
			_, err := v.ValidateSchemaBytes(body)
			return err
		case "full":
			_, err := v.ValidateBytes(body, benchNow)
			return err
		case "xsd-file":
			_, err := v.ValidateSchemaFile(*file)
			return err
		case "full-file":
			_, err := v.ValidateFile(*file, benchNow)
			return err
		case "full-reader":
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = v.ValidateReader(f, benchNow)
			return err
		}
		return fmt.Errorf("unknown mode %q", *mode)
	}
	if err := once(); err != nil { // warm up, and refuse to time a refusal
		r.Err = err.Error()
		return
	}
	var (
		mu    sync.Mutex
		ops   int
		first error
		wg    sync.WaitGroup
	)
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(*dur)
	for g := 0; g < *par; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if *n > 0 && i >= *n || *n == 0 && time.Now().After(deadline) {
					return
				}
				err := once()
				mu.Lock()
				ops++
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	if first != nil {
		r.Err = first.Error()
	}
	r.Ops = ops
	r.NsPerOp = float64(el.Nanoseconds()) / float64(ops)
	r.CPUNsPerOp = float64(cpu.Nanoseconds()) / float64(ops)
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is the process's peak resident set size in KiB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			k, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return k
		}
	}
	return 0
}

type lintRun struct {
	ns        float64 // wall
	cpuNs     float64 // user+system
	maxRSSKiB int64
}

func xmllint(schema string, files ...string) (lintRun, error) {
	args := append([]string{"--huge", "--noout", "--schema", schema}, files...)
	cmd := exec.Command("xmllint", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return lintRun{}, fmt.Errorf("xmllint: %w: %.300s", err, stderr.String())
	}
	el := time.Since(start)
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	ps := cmd.ProcessState
	r := lintRun{ns: float64(el.Nanoseconds()), cpuNs: float64((ps.UserTime() + ps.SystemTime()).Nanoseconds())}
	if ru != nil {
		r.maxRSSKiB = ru.Maxrss
	}
	return r, nil
}

// xmllintPerDoc is xmllint's time per document when it validates n copies
// of path in one process, less the time of one (process start and schema
// compile): the fair floor for an in-process validator.
func xmllintPerDoc(schema, path string, n int) (lintRun, error) {
	one, err := xmllint(schema, path)
	if err != nil {
		return lintRun{}, err
	}
	files := make([]string, n)
	for i := range files {
		files[i] = path
	}
	many, err := xmllint(schema, files...)
	if err != nil {
		return lintRun{}, err
	}
	return lintRun{ns: (many.ns - one.ns) / float64(n-1), cpuNs: (many.cpuNs - one.cpuNs) / float64(n-1)}, nil
}

// xmllintBest is xmllint's median time of n runs on path, with the peak RSS
// of any of them.
func xmllintBest(schema, path string, n int) (lintRun, error) {
	var runs []lintRun
	var peak int64
	for i := 0; i < n; i++ {
		r, err := xmllint(schema, path)
		if err != nil {
			return lintRun{}, err
		}
		runs = append(runs, r)
		peak = max(peak, r.maxRSSKiB)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ns < runs[j].ns })
	med := runs[len(runs)/2]
	med.maxRSSKiB = peak
	return med, nil
}
