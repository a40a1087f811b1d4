// Corpus: backing file names a qcow2 overlay can hold (qcow2.rst "Header": backing_file_offset/size; the
// backing format extension): NUL bytes, newlines and escape sequences, the longest names, bytes that are not
// UTF-8, json: and nbd:// specifications, loops, a chain deeper than the limit, and backing files that are
// FIFOs, sockets, devices or folders. A name no file can have is an error about the overlay at every stage;
// a chain that cannot be followed is a warning from Get-VDisk and an error from everything that opens it.
using System.Text;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using static VDisk.Engine.Tests.Corpus.CorpusStage;

namespace VDisk.Engine.Tests.Corpus;

internal static class Qcow2BackingCases
{
    private const string Raw = "raw";
    private const string TruncatesAtNul = "QEMU ends the name at the NUL byte and looks for the file named by what comes before it";

    public static void Write(CorpusWriter w)
    {
        Named(w, "nul", "base\0.raw", Raw, Outcome.Corrupt(Info, "NUL"), qemuDiffers: TruncatesAtNul);
        Named(w, "leading-nul", "\0base.raw", Raw, Outcome.Corrupt(Info, "NUL"), qemuDiffers: "QEMU reads a name starting with a NUL byte as no backing file at all");
        Named(w, "newline-existing", "base\n.raw", Raw, Outcome.Valid, createBase: "base\n.raw");
        Named(w, "newline-missing", "base\nmissing.raw", Raw, Outcome.Fails(Open, VDiskErrorKind.BackingMissing, "\\n"), warns: true);
        Named(w, "escape-sequence", "\u001b[2J\u001b[31mred.raw", Raw, Outcome.Fails(Open, VDiskErrorKind.BackingMissing, "\\x1b"), warns: true);
        Named(w, "longest-qcow2-name", new string('n', 1023), Raw, Outcome.Fails(Open, VDiskErrorKind.BackingMissing), warns: true);
        Named(w, "not-utf8", null, Raw, Outcome.Unsupported(Open, "UTF-8"), warns: true, rawName: new byte[] { 0x62, 0xff, 0xfe, 0x2e, 0x72 });
        Named(w, "json", "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"/etc/passwd\"}}", Raw,
            Outcome.Unsupported(Open, "JSON"), warns: true, qemuDiffers: "QEMU follows json: specifications and reads the file they name");
        Named(w, "nbd", "nbd://127.0.0.1:1/export", Raw, Outcome.Unsupported(Open, "protocol"), warns: true);
        Named(w, "http", "http://127.0.0.1:1/disk.raw", Raw, Outcome.Unsupported(Open, "protocol"), warns: true);
        Named(w, "dot-dot-outside", "../qcow2-backing-outside-target/base.raw", Raw, Outcome.Valid);
        Named(w, "absolute-inside", null, Raw, Outcome.Valid, createBase: "base.raw", absolute: "base.raw");
        Named(w, "folder", "subfolder", Raw, Outcome.Fails(Open, VDiskErrorKind.NotAnImage, "directory"), warns: true, makeFolder: "subfolder", errorFile: "subfolder");
        Named(w, "self-loop", "image.qcow2", "qcow2", Outcome.Fails(Open, VDiskErrorKind.ChainLoop, "loops"), warns: true);
        Named(w, "format-mismatch-raw-recorded-for-qcow2", "inner.qcow2", Raw, Outcome.Valid, createQcow2Base: "inner.qcow2");
        Named(w, "no-format-recorded", "base.raw", null, Outcome.Valid, createBase: "base.raw");
        PairLoop(w);
        TooDeep(w);
        if (w.SpecialFiles) Special(w);
    }

    // An overlay whose backing name is `name` (or `rawName` bytes), with the backing file prepared as asked.
    private static void Named(CorpusWriter w, string label, string? name, string? format, Outcome outcome, bool warns = false,
        string? qemuDiffers = null, byte[]? rawName = null, string? createBase = null, string? absolute = null, string? makeFolder = null,
        string? createQcow2Base = null, string? errorFile = null)
    {
        string caseName = $"qcow2-backing-{label}";
        string folder = w.FolderOf(caseName);
        string stored = absolute != null ? Path.Combine(folder, absolute) : name ?? "placeholder";
        var sample = new Qcow2Sample { BackingName = stored, BackingFormat = format };
        var image = sample.Build();
        if (rawName != null)
        {
            Array.Clear(image, sample.BackingNameOffset, Encoding.UTF8.GetByteCount(stored));
            rawName.CopyTo(image, sample.BackingNameOffset);
            Bytes.Be32(image, 16, (uint)rawName.Length);
        }
        string path = Path.Combine(folder, "image.qcow2");
        CorpusWriter.WriteSparse(path, image);
        if (createBase != null) File.WriteAllBytes(Path.Combine(folder, createBase), new byte[sample.Size]);
        if (createQcow2Base != null) CorpusWriter.WriteSparse(Path.Combine(folder, createQcow2Base), new Qcow2Sample().Build());
        if (makeFolder != null) Directory.CreateDirectory(Path.Combine(folder, makeFolder));
        if (label == "dot-dot-outside")
        {
            string outside = Directory.CreateDirectory(Path.Combine(folder, "..", "qcow2-backing-outside-target")).FullName;
            File.WriteAllBytes(Path.Combine(outside, "base.raw"), new byte[sample.Size]);
        }
        w.Add(caseName, "qcow2", path, outcome, warns, errorFile, qemuDiffers);
    }

    // a.qcow2 -> b.qcow2 -> a.qcow2.
    private static void PairLoop(CorpusWriter w)
    {
        const string name = "qcow2-backing-pair-loop";
        string folder = w.FolderOf(name);
        CorpusWriter.WriteSparse(Path.Combine(folder, "a.qcow2"), new Qcow2Sample { BackingName = "b.qcow2", BackingFormat = "qcow2" }.Build());
        CorpusWriter.WriteSparse(Path.Combine(folder, "b.qcow2"), new Qcow2Sample { BackingName = "a.qcow2", BackingFormat = "qcow2" }.Build());
        w.Add(name, "qcow2", Path.Combine(folder, "a.qcow2"), Outcome.Fails(Open, VDiskErrorKind.ChainLoop, "loops"), warns: true);
    }

    // A chain one image deeper than VDisk follows; QEMU has no such limit.
    private static void TooDeep(CorpusWriter w)
    {
        const string name = "qcow2-backing-chain-too-deep";
        string folder = w.FolderOf(name);
        int layers = ImageChain.MaxDepth + 2;
        for (int i = 0; i < layers; i++)
        {
            var sample = i == layers - 1 ? new Qcow2Sample() : new Qcow2Sample { BackingName = $"layer{i + 1}.qcow2", BackingFormat = "qcow2" };
            CorpusWriter.WriteSparse(Path.Combine(folder, $"layer{i}.qcow2"), sample.Build());
        }
        w.Add(name, "qcow2", Path.Combine(folder, "layer0.qcow2"), Outcome.Fails(Open, VDiskErrorKind.ChainTooDeep, "deeper"), warns: true,
            qemuDiffers: $"QEMU follows chains of any depth; VDisk stops at {ImageChain.MaxDepth} images");
    }

    // Backing files that are not regular files: refused before they are opened (a FIFO would block forever).
    private static void Special(CorpusWriter w)
    {
        foreach (var (label, make) in new (string, Action<string>)[]
        {
            ("fifo", CorpusWriter.MakeFifo),
            ("socket", CorpusWriter.MakeSocket),
            ("link-to-dev-zero", p => File.CreateSymbolicLink(p, "/dev/zero")),
            ("link-to-dev-null", p => File.CreateSymbolicLink(p, "/dev/null")),
        })
        {
            string caseName = $"qcow2-backing-{label}";
            string folder = w.FolderOf(caseName);
            CorpusWriter.WriteSparse(Path.Combine(folder, "image.qcow2"), new Qcow2Sample { BackingName = "base.raw", BackingFormat = Raw }.Build());
            make(Path.Combine(folder, "base.raw"));
            w.Add(caseName, "qcow2", Path.Combine(folder, "image.qcow2"), Outcome.Fails(Open, VDiskErrorKind.NotAnImage, "not a disk image"),
                warns: true, errorFile: "base.raw", special: true);
        }
        const string absolute = "qcow2-backing-absolute-dev-zero";
        string f = w.FolderOf(absolute);
        CorpusWriter.WriteSparse(Path.Combine(f, "image.qcow2"), new Qcow2Sample { BackingName = "/dev/zero", BackingFormat = Raw }.Build());
        w.Add(absolute, "qcow2", Path.Combine(f, "image.qcow2"), Outcome.Fails(Open, VDiskErrorKind.NotAnImage, "character device"),
            warns: true, errorFile: "/dev/zero", special: true);
    }
}
