// The libvirt steps of a hot backup (issue 11 "Hot backup of a running VM"; virsh(1) "snapshot-create-as",
// "blockcommit", "blockjob"): an atomic, metadata-free, disk-only external snapshot with an explicit overlay per chosen
// disk (snapshot=no for the others), and an active commit of one overlay back into the image under it, pivoting the
// guest back onto that image. --shallow matters: without it blockcommit commits into the deepest backing file of a
// chain. Steps that change what the guest runs on are run detached (setsid) so a Ctrl+C at the terminal cannot abort
// them half way.
using System.Globalization;
using VDisk.Engine.Core;

namespace VDisk.Engine.Libvirt;

/// <summary>External snapshots and block commits of a running domain's disks, through virsh.</summary>
public static class LibvirtBlockJobs
{
    /// <summary>
    /// Takes one atomic disk-only external snapshot (no libvirt metadata): each disk of <paramref name="overlays"/>
    /// (target to new overlay path) moves onto a new qcow2 overlay backed by its current image; every target in
    /// <paramref name="others"/> is left as it is (snapshot=no).
    /// </summary>
    public static void SnapshotDiskOnly(Virsh virsh, string domain, string name,
        IReadOnlyDictionary<string, string> overlays, IEnumerable<string> others)
    {
        var arguments = new List<string> { "snapshot-create-as", domain, "--name", name, "--disk-only", "--no-metadata", "--atomic" };
        foreach (var (target, overlay) in overlays)
            arguments.AddRange(new[] { "--diskspec", $"{Spec(target)},snapshot=external,driver=qcow2,file={Spec(overlay)}" });
        foreach (string target in others)
            arguments.AddRange(new[] { "--diskspec", $"{Spec(target)},snapshot=no" });
        virsh.RunDetached(domain, arguments.ToArray());
    }

    /// <summary>
    /// Commits the active overlay of disk <paramref name="target"/> into the image under it (only that one layer) and
    /// pivots the guest back onto that image; waits for the job to end.
    /// </summary>
    public static void CommitActive(Virsh virsh, string domain, string target) =>
        virsh.RunDetached(domain, "blockcommit", domain, target, "--active", "--shallow", "--pivot", "--wait");

    /// <summary>Aborts a block job of the disk, if there is one (errors are ignored: there may be none).</summary>
    public static void TryAbortJob(Virsh virsh, string domain, string target)
    {
        try
        {
            virsh.RunDetached(domain, "blockjob", domain, target, "--abort");
        }
        catch (VDiskException)
        {
        }
    }

    /// <summary>The source path (file, or dev, name, volume) of each disk target of the domain as QEMU runs it now.</summary>
    public static IReadOnlyDictionary<string, string?> LiveSources(Virsh virsh, string domain) =>
        DomainXml.Parse(virsh.DumpLiveXml(domain), $"domain {domain}").Disks
            .Where(d => d.Target.Length > 0).GroupBy(d => d.Target).ToDictionary(g => g.Key, g => g.First().Path);

    /// <summary>
    /// The shell line that finishes a hot backup left on an overlay: the active commit of disk <paramref name="target"/>
    /// back into its image (with a pivot), then removing the overlay.
    /// </summary>
    public static string FinishCommand(string uri, string domain, string target, string overlay) =>
        $"virsh -c {Quote(uri)} blockcommit {Quote(domain)} {Quote(target)} --active --shallow --pivot --wait --verbose && rm -f -- {Quote(overlay)}";

    /// <summary>A name for the snapshot (it is not kept: --no-metadata), from its time.</summary>
    public static string SnapshotName(DateTimeOffset time) =>
        "vdisk-backup-" + time.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);

    // virsh's --diskspec is comma separated; a comma inside a value is written twice.
    private static string Spec(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    // A POSIX shell word: single quotes, with each ' written as '\''.
    internal static string Quote(string value) =>
        value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or ':' or '+' or '=')
            ? value : "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
