// Issue "Encrypted images" benchmark: LUKS-encrypting input A into qcow2 (what Convert-VDisk -Encrypt does) and
// decrypting it back to raw (Convert-VDisk -SourcePassphrase), VDisk in a child process beside qemu-img convert
// with the secret from a file, the same input, the same iter-time, in the same run. VDisk writes with
// CacheMode Unsafe, as qemu-img convert does. Throughput ratio = qemu-img fastest time / VDisk time (target >= 0.9).
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.Bench;

internal static class EncryptBench
{
    private const string Passphrase = "vdisk bench passphrase";

    /// <summary>Child: encrypt-child SRC DST PWFILE ITERMS | decrypt-child SRC DST PWFILE.</summary>
    public static int Child(string[] args)
    {
        using var passphrase = Engine.Crypto.Passphrase.FromFile(args[3]);
        if (args[0] == "encrypt-child")
        {
            ConvertImage.Run(args[1], args[2], new ConvertOptions
            {
                DestinationFormat = ImageFormat.Qcow2,
                CacheMode = CacheMode.Unsafe,
                Encryption = new LuksFormatOptions { IterTime = TimeSpan.FromMilliseconds(int.Parse(args[4])) },
                Passphrase = passphrase,
            });
        }
        else
        {
            using (ImageKeys.Use(new[] { passphrase }))
                ConvertImage.Run(args[1], args[2], new ConvertOptions { DestinationFormat = ImageFormat.Raw, CacheMode = CacheMode.Unsafe });
        }
        return 0;
    }

    public static void Run(string folder, string input, int runs, int iterMs)
    {
        string pw = Path.Combine(folder, "pw.txt");
        File.WriteAllText(pw, Passphrase);
        string self = typeof(EncryptBench).Assembly.Location;
        string secret = $"secret,id=s,file={pw}";
        string luksOpts = $"encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time={iterMs}";
        long dataBytes = DataBytes(input);
        Console.WriteLine($"Encrypted convert of input A ({new FileInfo(input).Length >> 30} GiB, {dataBytes / 1048576.0:F0} MiB of data), LUKS aes-256-xts-plain64, iter-time {iterMs} ms both sides,");
        Console.WriteLine($"median of {runs} runs; VDisk with CacheMode Unsafe (as qemu-img convert). Throughput ratio = qemu fastest s / VDisk s (target >= 0.9).");
        Console.WriteLine($"{"line",-24} {"VDisk s",8} {"qemu s",8} {"qemu -W",8} {"MiB/s ours",11} {"MiB/s qemu",11} {"ratio",6} {"peak MiB ours/qemu",19}");

        string ours = Path.Combine(folder, "ours-enc.qcow2"), theirs = Path.Combine(folder, "theirs-enc.qcow2");
        ConvertBench.Warm(input);
        var qemu = new List<string> { "convert", "--object", secret, "-f", "raw", "-O", "qcow2", "-o", luksOpts };
        var m = Retrying(() => ConvertBench.Medians(runs,
            (("dotnet", new[] { self, "encrypt-child", input, ours, pw, iterMs.ToString() }), ours),
            (("qemu-img", qemu.Concat(new[] { input, theirs }).ToArray()), theirs),
            (("qemu-img", qemu.Concat(new[] { "-W", "-m", "16", input, theirs }).ToArray()), theirs)));
        Print("raw -> qcow2 LUKS", m, dataBytes);

        // Decrypt: one encrypted input (made by qemu-img), read by both.
        string encrypted = Path.Combine(folder, "input-a-luks.qcow2");
        for (int attempt = 0; ; attempt++)
        {
            try { Tools.Run("qemu-img", qemu.Concat(new[] { input, encrypted }).ToArray()); break; }
            catch (InvalidOperationException) when (attempt < 5) { } // qemu's transient LUKS calibration failure
        }
        string oursRaw = Path.Combine(folder, "ours-dec.raw"), theirsRaw = Path.Combine(folder, "theirs-dec.raw");
        ConvertBench.Warm(encrypted);
        var qemuDec = new List<string> { "convert", "--object", secret, "--image-opts", $"driver=qcow2,file.filename={encrypted},encrypt.key-secret=s", "-O", "raw" };
        m = Retrying(() => ConvertBench.Medians(runs,
            (("dotnet", new[] { self, "decrypt-child", encrypted, oursRaw, pw }), oursRaw),
            (("qemu-img", qemuDec.Concat(new[] { theirsRaw }).ToArray()), theirsRaw),
            (("qemu-img", qemuDec.Concat(new[] { "-W", "-m", "16", theirsRaw }).ToArray()), theirsRaw)));
        Print("qcow2 LUKS -> raw", m, dataBytes);
        File.Delete(encrypted);
    }

    // qemu-img sometimes gives up calibrating PBKDF2 on a loaded machine ("Unable to get accurate CPU usage"): a
    // failed median (-1) is measured again, a few times at most.
    private static (double Seconds, long PeakBytes, long OutputBytes)[] Retrying(Func<(double Seconds, long PeakBytes, long OutputBytes)[]> measure)
    {
        for (int attempt = 0; ; attempt++)
        {
            var m = measure();
            if (m.All(x => x.Seconds >= 0) || attempt == 3) return m;
        }
    }

    private static void Print(string name, (double Seconds, long PeakBytes, long OutputBytes)[] m, long dataBytes)
    {
        double ours = m[0].Seconds, fastest = Math.Min(m[1].Seconds, m[2].Seconds);
        string Rate(double s) => s > 0 ? (dataBytes / 1048576.0 / s).ToString("F0") : "n/a";
        string ratio = ours > 0 && fastest > 0 ? (fastest / ours).ToString("F2") : "n/a";
        Console.WriteLine($"{name,-24} {ours,8:F2} {m[1].Seconds,8:F2} {m[2].Seconds,8:F2} {Rate(ours),11} {Rate(fastest),11} {ratio,6} {$"{m[0].PeakBytes >> 20}/{m[1].PeakBytes >> 20}",19}");
    }

    // Bytes of data (not holes) in the raw input: what both sides really encrypt.
    private static long DataBytes(string raw)
    {
        long total = 0;
        using var storage = FileStorage.Open(raw, write: false);
        for (long offset = 0; offset < storage.Length;)
        {
            if (!storage.TryGetExtent(offset, out bool isData, out long length) || length <= 0) return storage.Length;
            if (isData) total += length;
            offset += length;
        }
        return total;
    }
}
