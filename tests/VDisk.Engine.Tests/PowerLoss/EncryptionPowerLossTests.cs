// LUKS-encrypted qcow2 under the power-loss simulator: guest writes (whole and partial sectors, new clusters), and
// adding or removing a key slot. After any crash point the image opens with the old passphrase, every flushed byte
// reads back, every guest sector holds a content it really had (never ciphertext decrypted into noise), and a
// sample passes qemu-img check with the secret.
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Interop;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class EncryptionPowerLossTests
{
    private const long Size = 2L << 20;
    private const int Sector = 512;

    [SkippableFact]
    public void EncryptedWritesSurvivePowerLoss()
    {
        Qemu.Require();
        using var key = Secrets.Key(Secrets.Pw);
        var options = new CreateOptions
        {
            ClusterSize = 4096,
            Encryption = new LuksFormatOptions { IterTime = Secrets.Fast },
            Passphrase = key,
        };
        var current = new byte[Size];
        var seen = new Dictionary<long, HashSet<string>>(); // guest sector -> every content it has held
        void Saw(long offset, int length)
        {
            for (long s = offset / Sector; s * Sector < offset + length; s++)
            {
                if (!seen.TryGetValue(s, out var set)) seen[s] = set = new HashSet<string> { Convert.ToHexString(new byte[Sector]) };
                set.Add(Convert.ToHexString(current, (int)(s * Sector), Sector));
            }
        }
        var scenario = new CrashScenario("encrypted writes", options, Size, null, TinyCaches: true, (disk, log, flushes) =>
        {
            var random = new Random(5);
            for (int i = 0; i < 24; i++)
            {
                int length = i % 3 == 0 ? random.Next(1, 700) : random.Next(1, 9) * Sector;
                long at = i % 3 == 0 ? random.NextInt64(0, Size - length) : random.NextInt64(0, (Size - length) / Sector) * Sector;
                var data = CrashHarness.Pattern(length, i);
                disk.Write(at, data);
                log.Wrote(at, data);
                data.CopyTo(current, at);
                Saw(at, length);
                if (i % 4 == 3)
                {
                    disk.Flush();
                    log.Flushed(flushes());
                }
            }
        });

        using var scope = Secrets.Use(Secrets.Pw);
        var (recorder, log) = CrashHarness.Record(scenario);
        Assert.True(recorder.FlushCount > 2);
        var failures = new List<string>();
        using var dir = new TempFolder();
        int n = 0;
        foreach (var crash in recorder.CrashImages(new Random(3), 4))
        {
            string? failure = Qcow2Consistency.Check("crash.qcow2", crash.Bytes).Failure;
            if (failure is null)
            {
                using var disk = CrashHarness.Open(scenario, crash.Bytes);
                var actual = Images.ReadAll(disk);
                var (expected, loose) = log.Oracle(crash.Flushes);
                for (int i = 0; i < actual.Length && failure is null; i++)
                    if (!loose[i] && actual[i] != expected[i]) failure = $"flushed byte {i} reads 0x{actual[i]:x2}, not 0x{expected[i]:x2}";
                for (long s = 0; s < Size / Sector && failure is null; s++)
                {
                    string content = Convert.ToHexString(actual, (int)(s * Sector), Sector);
                    bool known = seen.TryGetValue(s, out var set) ? set.Contains(content) : content.All(c => c == '0');
                    if (!known) failure = $"guest sector {s} holds content it never had (noise from a torn cipher write?)";
                }
            }
            if (failure is null && n++ % 8 == 0) failure = QemuCheck(dir, crash.Bytes);
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= 5) break;
        }
        Assert.True(n > 8, $"only {n} crash images were checked");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void AddingOrRemovingAKeySlotSurvivesPowerLoss(bool add)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = Secrets.CreateEncrypted(dir.File("k.qcow2"), Size, Secrets.Pw, clusterSize: 4096);
        var content = CrashHarness.Pattern(1 << 20, 9);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = VDisk.Engine.Chain.ImageChain.Open(path, new VDisk.Engine.Chain.OpenOptions { Writable = true }))
            disk.Write(4096, content);
        if (!add)
            using (Secrets.Use(Secrets.Pw))
            using (var k2 = Secrets.Key(Secrets.Pw2))
                VDisk.Engine.Operations.KeySlotImage.Add(path, k2, Secrets.Fast);
        long headerOffset = EncryptionErrorTests.FdePointer(path).Offset;

        var recorder = new PowerLossStorage(new MemoryStorage("k.qcow2", File.ReadAllBytes(path)));
        using (var keys = Secrets.Use(Secrets.Pw))
        using (var k2 = Secrets.Key(Secrets.Pw2))
        {
            if (add) Luks.AddKeySlot(recorder, headerOffset, ImageKeys.Current, k2, Secrets.Fast, null, "k.qcow2");
            else Luks.RemoveKeySlots(recorder, headerOffset, ImageKeys.Current, k2, null, "k.qcow2");
            recorder.Flush();
        }
        var failures = new List<string>();
        int n = 0;
        foreach (var crash in recorder.CrashImages(new Random(7), 6))
        {
            string? failure = null;
            try
            {
                using (Secrets.Use(Secrets.Pw))
                using (var disk = new VirtualDisk("k.qcow2", Formats.Qcow2.Qcow2Driver.Open(new MemoryStorage("k.qcow2", crash.Bytes, canWrite: false), writable: false), null, writable: false))
                    if (!EncryptionErrorTests.Read(disk, 4096, content.Length).AsSpan().SequenceEqual(content)) failure = "the data does not read back with the old passphrase";
                // The second passphrase opens the image or is refused as wrong: never a corrupt header.
                using (Secrets.Use(Secrets.Pw2))
                    try { Formats.Qcow2.Qcow2Driver.Open(new MemoryStorage("k.qcow2", crash.Bytes, canWrite: false), writable: false).Dispose(); }
                    catch (VDiskException e) when (e.Kind == VDiskErrorKind.WrongPassphrase) { }
            }
            catch (VDiskException e) { failure = $"{e.Kind}: {e.Message}"; }
            if (failure is null && n++ % 4 == 0) failure = QemuCheck(dir, crash.Bytes);
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= 5) break;
        }
        Assert.True(n > 2, $"only {n} crash images were checked");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    // qemu-img check with the old secret: opens (the key slot is intact) and finds no corruption (leaks allowed).
    private static string? QemuCheck(TempFolder dir, byte[] image)
    {
        string file = dir.File("crash.qcow2");
        File.WriteAllBytes(file, image);
        var args = new List<string> { "check" };
        args.AddRange(Secrets.Object("s", Secrets.Pw));
        args.AddRange(new[] { "--image-opts", Secrets.Opts(file) });
        var (code, output) = Qemu.TryImg(args.ToArray());
        return code is 0 or 3 ? null : $"qemu-img check exited {code}: {output}";
    }
}
