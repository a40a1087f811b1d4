// Corpus: raw disks that look like something else, and inputs that are not disks. A guest controls the bytes of
// its raw disk, so it can write a VMDK descriptor (or a qcow2, VMDK or VDI magic) into the first sector. A
// descriptor in a file that cannot be a descriptor file (too large, binary data after the text) is read as raw
// with a warning (FormatProbe); one in a plausible file may only name files in its folder. FIFOs, sockets,
// devices and folders as the input itself are refused before anything is opened.
using System.Text;
using VDisk.Engine.Core;
using static VDisk.Engine.Tests.Corpus.CorpusStage;

namespace VDisk.Engine.Tests.Corpus;

internal static class RawCases
{
    private const string QemuOpensDescriptor = "QEMU opens the file as a VMDK descriptor and reads the host file its extent names";

    public static void Write(CorpusWriter w)
    {
        string planted = VmdkSample.Flat("/etc/passwd", 1);
        w.Add("raw-descriptor-in-large-raw", "raw", "disk.img", WithText(2 << 20, planted), Outcome.Valid, warns: true, qemuDiffers: QemuOpensDescriptor);
        w.Add("raw-descriptor-then-binary", "raw", "disk.img", Bytes.With(WithText(64 << 10, planted), b => Array.Fill(b, (byte)0xaa, 4096, 512)),
            Outcome.Valid, warns: true, qemuDiffers: QemuOpensDescriptor);
        w.Add("raw-descriptor-with-control-bytes", "raw", "disk.img", Bytes.Ascii(planted + "\u0001\u0002binary"), Outcome.Valid, warns: true,
            qemuDiffers: QemuOpensDescriptor);
        w.Add("raw-descriptor-text-only-absolute-extent", "raw", "disk.img", Bytes.Ascii(planted), Outcome.Unsupported(Info, "outside its folder"),
            qemuDiffers: QemuOpensDescriptor);
        w.Add("raw-descriptor-nul-padded-absolute-extent", "raw", "disk.img", WithText(4096, planted), Outcome.Unsupported(Info, "outside its folder"),
            qemuDiffers: QemuOpensDescriptor);
        w.Add("raw-descriptor-one-mib", "raw", "disk.img", Bytes.Ascii(planted + new string('#', (1 << 20) - planted.Length - 1) + "\n"),
            Outcome.Valid, warns: true, qemuDiffers: "QEMU reads the first 1 MiB - 1 bytes as a descriptor and follows its extent");
        InFolder(w);

        var random = new Random(7);
        byte[] Noise(int length, string magic, int at = 0)
        {
            var b = new byte[length];
            random.NextBytes(b);
            Encoding.Latin1.GetBytes(magic).CopyTo(b, at);
            return b;
        }
        w.Add("raw-qcow2-magic-noise", "raw", "disk.img", Noise(8192, "QFI\u00fb"), Outcome.Unsupported(Info, "version"));
        w.Add("raw-kdmv-magic-noise", "raw", "disk.img", Noise(8192, "KDMV"), Outcome.Corrupt(Info, "sparse extent header"));
        var vdi = Noise(8192, "");
        Bytes.Le32(vdi, 0x40, 0xbeda107f);
        w.Add("raw-vdi-signature-noise", "raw", "disk.img", vdi, Outcome.Unsupported(Info, "version"));
        var mbr = new byte[1 << 20];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        w.Add("raw-mbr", "raw", "disk.img", mbr, Outcome.Valid);
        w.Add("raw-empty", "raw", "disk.img", Array.Empty<byte>(), Outcome.Valid);
        w.Add("raw-one-byte", "raw", "disk.img", new byte[] { 7 }, Outcome.Valid);
        w.Add("raw-odd-size", "raw", "disk.img", Noise(1000, ""), Outcome.Valid);
        w.Add("raw-text-version-line", "raw", "disk.img", Bytes.Ascii("version=1\n"), Outcome.Corrupt(Info, "CID"));
        w.Add("raw-text-not-descriptor", "raw", "disk.img", Bytes.Ascii("hello, this is a text file\n"), Outcome.Valid);
        w.Add("raw-text-empty-line-before-version", "raw", "disk.img", Bytes.Ascii("# Disk DescriptorFile\n\nversion=1\nCID=1\n"), Outcome.Valid);
        Links(w);
        if (w.SpecialFiles) Special(w);
    }

    private static byte[] WithText(int length, string text)
    {
        var bytes = new byte[length];
        Encoding.ASCII.GetBytes(text).CopyTo(bytes, 0);
        return bytes;
    }

    // A small text descriptor that names another disk in its own folder: followed (the host put that disk there).
    private static void InFolder(CorpusWriter w)
    {
        const string name = "raw-descriptor-text-only-extent-in-folder";
        string folder = w.FolderOf(name);
        File.WriteAllText(Path.Combine(folder, "disk.img"), VmdkSample.Flat("other.img"));
        File.WriteAllBytes(Path.Combine(folder, "other.img"), VmdkSample.FlatData());
        w.Add(name, "raw", Path.Combine(folder, "disk.img"), Outcome.Valid);
    }

    private static void Links(CorpusWriter w)
    {
        string folder = w.FolderOf("raw-link-to-folder");
        Directory.CreateDirectory(Path.Combine(folder, "target"));
        File.CreateSymbolicLink(Path.Combine(folder, "disk.img"), "target");
        w.Add("raw-link-to-folder", "raw", Path.Combine(folder, "disk.img"), Outcome.Fails(Info, VDiskErrorKind.NotAnImage, "directory"));
        folder = w.FolderOf("raw-link-loop");
        File.CreateSymbolicLink(Path.Combine(folder, "disk.img"), "disk.img");
        w.Add("raw-link-loop", "raw", Path.Combine(folder, "disk.img"), Outcome.Fails(Info, VDiskErrorKind.NotFound, "no such file"));
        folder = w.FolderOf("raw-link-dangling");
        File.CreateSymbolicLink(Path.Combine(folder, "disk.img"), "missing.img");
        w.Add("raw-link-dangling", "raw", Path.Combine(folder, "disk.img"), Outcome.Fails(Info, VDiskErrorKind.NotFound, "no such file"));
    }

    // The input itself is a FIFO, a socket or a device: refused before it is opened.
    private static void Special(CorpusWriter w)
    {
        foreach (var (label, make, mentions) in new (string, Action<string>, string)[]
        {
            ("fifo", CorpusWriter.MakeFifo, "named pipe"),
            ("socket", CorpusWriter.MakeSocket, "socket"),
            ("link-to-dev-zero", p => File.CreateSymbolicLink(p, "/dev/zero"), "character device"),
            ("link-to-dev-tty", p => File.CreateSymbolicLink(p, "/dev/tty"), "character device"),
        })
        {
            string name = $"raw-input-{label}";
            string path = Path.Combine(w.FolderOf(name), "disk.img");
            make(path);
            w.Add(name, "raw", path, Outcome.Fails(Info, VDiskErrorKind.NotAnImage, mentions), special: true);
        }
    }
}
