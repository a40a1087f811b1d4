// qemu-img is the reference: for every corpus case (except FIFOs and devices, on which qemu-img blocks), qemu-img
// info must succeed exactly when VDisk's Info stage does, qemu-img convert exactly when VDisk's Read stage does,
// and when both read the image they must read the same bytes. A case that says QEMU differs (QemuDiffers) must
// really differ, so every deliberate departure from QEMU stays written down and true.
using System.Diagnostics;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Corpus;

[Collection(nameof(CorpusCollection))]
public class CorpusQemuTests(CorpusFixture corpus)
{
    [SkippableFact]
    public void QemuImgAgreesWithEveryCaseOrTheCaseSaysWhy()
    {
        Qemu.Require();
        var problems = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.ForEach(corpus.Cases.Where(c => !c.SpecialFile && c.KnownCoreFailure is null), new ParallelOptions { MaxDegreeOfParallelism = 4 }, c =>
        {
            string output = Path.Combine(corpus.Output, c.Name);
            Directory.CreateDirectory(output);
            var differences = Differences(c, output);
            if (c.QemuDiffers is null)
                foreach (var d in differences) problems.Add($"{c.Name}: {d}");
            else if (differences.Count == 0)
                problems.Add($"{c.Name}: says \"{c.QemuDiffers}\", but qemu-img answers as VDisk does");
        });
        Assert.True(problems.Count == 0, $"{problems.Count} disagreements with qemu-img:\n" + string.Join("\n", problems.Order(StringComparer.Ordinal)));
    }

    private static List<string> Differences(CorpusCase c, string output)
    {
        var differences = new List<string>();
        var (infoCode, infoText) = Run("info", "-U", "--output=json", c.Path);
        bool vdiskInfo = c.ExpectedAt(CorpusStage.Info) is null;
        if ((infoCode == 0) != vdiskInfo)
            differences.Add($"qemu-img info {(infoCode == 0 ? "succeeds" : "fails: " + Trim(infoText))}, VDisk info {(vdiskInfo ? "succeeds" : "fails")}");

        string vdiskRaw = Path.Combine(output, "vdisk.raw");
        bool vdiskRead = c.ExpectedAt(CorpusStage.Read) is null;
        var (convertCode, convertText) = Run("convert", "-U", "-O", "raw", c.Path, Path.Combine(output, "qemu.raw"));
        if ((convertCode == 0) != vdiskRead)
            differences.Add($"qemu-img convert {(convertCode == 0 ? "succeeds" : "fails: " + Trim(convertText))}, VDisk read {(vdiskRead ? "succeeds" : "fails")}");
        else if (vdiskRead)
        {
            ConvertImage.Run(c.Path, vdiskRaw, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true });
            var (compareCode, compareText) = Run("compare", "-U", "-F", "raw", c.Path, vdiskRaw);
            if (compareCode != 0) differences.Add($"qemu-img reads other content: {Trim(compareText)}");
            var info = InspectImage.Run(c.Path);
            if (infoCode == 0 && !infoText.Contains($"\"virtual-size\": {info.VirtualSize},", StringComparison.Ordinal))
                differences.Add($"qemu-img info gives another virtual size than {info.VirtualSize}");
        }
        if (c.Snapshot != null)
        {
            var (code, text) = Run("convert", "-U", "-l", $"snapshot.id={c.Snapshot}", "-O", "raw", c.Path, Path.Combine(output, "qemu-snapshot.raw"));
            if ((code == 0) != (c.SnapshotError is null))
                differences.Add($"qemu-img convert -l {c.Snapshot} {(code == 0 ? "succeeds" : "fails: " + Trim(text))}, VDisk {(c.SnapshotError is null ? "succeeds" : "fails")}");
        }
        return differences;
    }

    private static string Trim(string text) => text.Trim().Split('\n')[0];

    // qemu-img with a time limit (a case must never hang the test run).
    private static (int Code, string Output) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(10_000))
        {
            p.Kill();
            return (-1, "qemu-img did not finish within 10 s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
