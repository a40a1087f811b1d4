// Hot backup of a running libvirt domain (issue 11 "Hot backup of a running VM", the seed's recipe made safe):
// one atomic disk-only external snapshot puts every chosen disk on a new qcow2 overlay beside its image; QEMU then
// holds each image only as a read-only backing file, so a consistent read (QEMU's "consistent read" lock, not
// sharing "write") is allowed, and each image is backed up with BackupImage.Run into its own set; then each overlay
// is committed back (virsh blockcommit --active --shallow --pivot) and removed. Whatever fails or is interrupted
// after the snapshot, every commit is attempted; a commit that cannot be done is reported with the state the domain
// is left in and the one command that finishes it. A domain that is shut off is backed up offline from the images
// its definition names (consistent: its images are not open, and the read lock keeps a start from writing them).
using System.Globalization;
using VDisk.Engine.Core;
using VDisk.Engine.Libvirt;

namespace VDisk.Engine.Backup;

/// <summary>One disk a hot backup covers.</summary>
public sealed record HotBackupDisk
{
    /// <summary>The disk's target (vda, sdb ...).</summary>
    public required string Target { get; init; }
    /// <summary>The disk's image: the file backed up, and the one the guest runs on again afterwards.</summary>
    public required string ImagePath { get; init; }
    /// <summary>The image's format as the domain declares it.</summary>
    public required ImageFormat Format { get; init; }
    /// <summary>The backup set the disk's point goes into.</summary>
    public required string SetFolder { get; init; }
    /// <summary>The overlay the guest writes to while the image is backed up; null for a domain that is shut off.</summary>
    public string? OverlayPath { get; init; }
}

/// <summary>What a hot backup of one domain will do, worked out before anything changes.</summary>
public sealed record HotBackupPlan
{
    /// <summary>The domain's name.</summary>
    public required string Domain { get; init; }
    /// <summary>The libvirt connection.</summary>
    public required string Uri { get; init; }
    /// <summary>The domain's state (running, paused, shut off).</summary>
    public required string State { get; init; }
    /// <summary>True for a running (or paused) domain: snapshot, backup, commit. False: an offline backup of its images.</summary>
    public bool Live => State != "shut off";
    /// <summary>The disks backed up, in the domain's order.</summary>
    public required IReadOnlyList<HotBackupDisk> Disks { get; init; }
    /// <summary>Why disks of the domain are left out (not files, read-only, removable media).</summary>
    public required IReadOnlyList<string> Skipped { get; init; }
}

/// <summary>The outcome for one disk: its new point, or why it has none.</summary>
public sealed record HotBackupDiskResult
{
    /// <summary>The disk.</summary>
    public required HotBackupDisk Disk { get; init; }
    /// <summary>The backup, when it was written.</summary>
    public BackupResult? Result { get; init; }
    /// <summary>Why the backup of this disk failed (the others went on, and its overlay was committed all the same).</summary>
    public Exception? Error { get; init; }
}

/// <summary>What a hot backup did.</summary>
public sealed record HotBackupResult
{
    /// <summary>The plan carried out.</summary>
    public required HotBackupPlan Plan { get; init; }
    /// <summary>One entry per disk of the plan.</summary>
    public required IReadOnlyList<HotBackupDiskResult> Disks { get; init; }
    /// <summary>Things the caller should be told (an overlay that could not be removed).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = Array.Empty<string>();
    /// <summary>
    /// Set when an overlay could not be committed (LibvirtFailed): its message says which disks still run on which
    /// overlay and the command that finishes each. The points in <see cref="Disks"/> are good all the same.
    /// </summary>
    public VDiskException? CommitError { get; init; }
}

/// <summary>Backs up the disks of libvirt domains, running or not.</summary>
public static class HotBackup
{
    /// <summary>The part of an overlay's file name that marks it as a hot backup's.</summary>
    public const string OverlayMarker = ".vdisk-backup-";

    /// <summary>
    /// Works out the backup of <paramref name="domain"/>: its state, the disks chosen (every file-backed, writable
    /// disk, or the <paramref name="targets"/> named: one that cannot be backed up is then an error), the set of each
    /// (see <see cref="SetFolderFor"/>) and the overlay of each. Changes nothing. Errors: DomainNotFound,
    /// DiskNotFound, LibvirtFailed (a state other than running, paused or shut off; a disk still on an overlay of an
    /// earlier backup), InvalidArgument (a destination that cannot be used).
    /// </summary>
    public static HotBackupPlan Plan(Virsh virsh, string domain, string destination, IReadOnlyList<string>? targets)
    {
        string state = virsh.State(domain);
        if (state is not ("running" or "paused" or "shut off"))
            throw new VDiskException(VDiskErrorKind.LibvirtFailed, null,
                $"Domain '{domain}' is {state}: a hot backup needs it running (or paused), an offline backup needs it shut off. Try again when it is one or the other.");
        var xml = DomainXml.Parse(virsh.DumpLiveXml(domain), $"domain {domain}");
        var (chosen, skipped) = ChooseDisks(xml, targets);
        destination = Path.GetFullPath(destination);
        if (File.Exists(destination)) throw VDiskException.Invalid(destination, $"{destination} is a file, not a folder for backup sets.");
        if (BackupSet.IsSet(destination) && chosen.Count > 1)
            throw VDiskException.Invalid(destination,
                $"{destination} is one backup set, and domain '{domain}' has {chosen.Count} disks to back up ({string.Join(", ", chosen.Select(d => d.Target))}): " +
                "give a folder that holds one set per disk, or one disk with -Target.");
        var time = DateTimeOffset.UtcNow;
        var disks = new List<HotBackupDisk>();
        foreach (var disk in chosen)
        {
            string image = disk.Path!;
            if (state != "shut off" && Path.GetFileName(image).Contains(OverlayMarker, StringComparison.Ordinal))
                throw new VDiskException(VDiskErrorKind.LibvirtFailed, image,
                    $"Domain '{domain}' runs disk {disk.Target} on {image}, the overlay of an earlier hot backup that was not committed. Finish that first: " +
                    LibvirtBlockJobs.FinishCommand(virsh.Uri, domain, disk.Target, image));
            string set = SetFolderFor(destination, domain, disk.Target, chosen.Count);
            if (File.Exists(set)) throw VDiskException.Invalid(set, $"{set} is a file, not a backup set folder.");
            disks.Add(new HotBackupDisk
            {
                Target = disk.Target, ImagePath = image, Format = FormatProbe.ParseName(disk.Format ?? "raw")!.Value, SetFolder = set,
                OverlayPath = state == "shut off" ? null : OverlayPathFor(image, time),
            });
        }
        return new HotBackupPlan { Domain = domain, Uri = virsh.Uri, State = state, Disks = disks, Skipped = skipped };
    }

    /// <summary>
    /// The disks a backup covers: with no <paramref name="targets"/>, every disk that is a writable file in a format
    /// VDisk reads (the others are listed with the reason in Skipped); with targets, exactly those, each of which must
    /// exist (else DiskNotFound) and be such a disk (else Unsupported).
    /// </summary>
    public static (IReadOnlyList<DiskAttachment> Chosen, IReadOnlyList<string> Skipped) ChooseDisks(DomainXml xml, IReadOnlyList<string>? targets)
    {
        var chosen = new List<DiskAttachment>();
        var skipped = new List<string>();
        if (targets is { Count: > 0 })
        {
            foreach (string target in targets.Distinct(StringComparer.Ordinal))
            {
                var disk = xml.Disk(target);
                if (WhyNot(xml, disk) is { } reason)
                    throw new VDiskException(VDiskErrorKind.Unsupported, disk.Path, $"Domain '{xml.Name}': disk {target} cannot be backed up: {reason}.");
                chosen.Add(disk);
            }
            return (xml.Disks.Where(chosen.Contains).ToList(), skipped);
        }
        foreach (var disk in xml.Disks)
        {
            if (WhyNot(xml, disk) is { } reason) skipped.Add($"Domain '{xml.Name}': disk {disk.Target} is skipped: {reason}.");
            else chosen.Add(disk);
        }
        return (chosen, skipped);
    }

    /// <summary>
    /// The set of one disk: <paramref name="destination"/> itself when it already is a backup set and one disk is
    /// backed up; otherwise DESTINATION/DOMAIN-TARGET (for example /backups/web01-vda).
    /// </summary>
    public static string SetFolderFor(string destination, string domain, string target, int diskCount) =>
        diskCount == 1 && BackupSet.IsSet(destination) ? destination : Path.Combine(destination, $"{domain}-{target}");

    /// <summary>A new overlay's path beside <paramref name="image"/>: IMAGE.vdisk-backup-YYYYMMDDTHHMMSSZ.qcow2 (-N added if taken).</summary>
    public static string OverlayPathFor(string image, DateTimeOffset time)
    {
        string stem = image + OverlayMarker + time.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string path = stem + ".qcow2";
        for (int n = 2; File.Exists(path); n++) path = $"{stem}-{n}.qcow2";
        return path;
    }

    /// <summary>
    /// Carries out <paramref name="plan"/>. A live domain: snapshot, back up each image, commit each overlay and remove
    /// it. Each disk's backup error is kept in its result and the others go on. After the snapshot every overlay is
    /// committed whatever happens (an error, <paramref name="cancel"/>); a commit that cannot be done is a LibvirtFailed
    /// error naming the state of the domain and the command that finishes it: in <see cref="HotBackupResult.CommitError"/>,
    /// or thrown (with the interruption as its inner exception) when the backup was interrupted. <paramref name="afterSnapshot"/> runs
    /// once the snapshot is taken (tests inject guest writes and failures there).
    /// </summary>
    public static HotBackupResult Run(Virsh virsh, HotBackupPlan plan, BackupOptions options, IProgress<BackupProgress>? progress = null,
        CancellationToken cancel = default, Action<HotBackupPlan>? afterSnapshot = null)
    {
        cancel.ThrowIfCancellationRequested();
        options = options with { Time = (options.Time ?? DateTimeOffset.UtcNow).ToUniversalTime() };
        if (plan.Disks.Count == 0) return new HotBackupResult { Plan = plan, Disks = Array.Empty<HotBackupDiskResult>() };
        // A destination that cannot be made fails here, before the guest is moved onto overlays.
        foreach (var disk in plan.Disks) Directory.CreateDirectory(disk.SetFolder);
        if (!plan.Live)
            return new HotBackupResult { Plan = plan, Disks = plan.Disks.Select(d => BackUp(d, options, progress, cancel)).ToList() };

        TakeSnapshot(virsh, plan, options.Time!.Value);
        var results = new List<HotBackupDiskResult>();
        var warnings = new List<string>();
        var pending = plan.Disks.ToList(); // still on their overlays
        var stuck = new List<(HotBackupDisk Disk, string Error)>();
        Exception? interruption = null;
        try
        {
            afterSnapshot?.Invoke(plan);
            foreach (var disk in plan.Disks)
            {
                results.Add(BackUp(disk, options, progress, cancel));
                pending.Remove(disk);
                if (Commit(virsh, plan, disk, warnings) is { } error) stuck.Add((disk, error));
            }
        }
        catch (Exception e)
        {
            interruption = e;
        }
        foreach (var disk in pending) // whatever happened above
            if (Commit(virsh, plan, disk, warnings) is { } error) stuck.Add((disk, error));
        var commitError = stuck.Count == 0 ? null
            : new VDiskException(VDiskErrorKind.LibvirtFailed, stuck[0].Disk.ImagePath, StuckMessage(virsh, plan, stuck, interruption), interruption);
        if (interruption is not null)
        {
            if (commitError is not null) throw commitError;
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(interruption);
        }
        return new HotBackupResult { Plan = plan, Disks = results, Warnings = warnings, CommitError = commitError };
    }

    private static HotBackupDiskResult BackUp(HotBackupDisk disk, BackupOptions options, IProgress<BackupProgress>? progress, CancellationToken cancel)
    {
        try
        {
            // No Force: the image is opened for consistent reads, which QEMU allows on a read-only backing file and
            // refuses (ImageInUse) while a guest writes it.
            var result = BackupImage.Run(disk.ImagePath, disk.SetFolder, options with { SourceFormat = disk.Format, Force = false }, progress, cancel);
            return new HotBackupDiskResult { Disk = disk, Result = result };
        }
        catch (Exception e) when (e is VDiskException or IOException or UnauthorizedAccessException)
        {
            return new HotBackupDiskResult { Disk = disk, Error = e };
        }
    }

    private static void TakeSnapshot(Virsh virsh, HotBackupPlan plan, DateTimeOffset time)
    {
        var overlays = plan.Disks.ToDictionary(d => d.Target, d => d.OverlayPath!);
        foreach (var disk in plan.Disks)
            if (File.Exists(disk.OverlayPath))
                throw new VDiskException(VDiskErrorKind.AlreadyExists, disk.OverlayPath, $"{disk.OverlayPath} exists already; it would be the overlay of disk {disk.Target}.");
        var others = LibvirtBlockJobs.LiveSources(virsh, plan.Domain).Keys.Where(t => !overlays.ContainsKey(t)).ToList();
        try
        {
            LibvirtBlockJobs.SnapshotDiskOnly(virsh, plan.Domain, LibvirtBlockJobs.SnapshotName(time), overlays, others);
        }
        catch (VDiskException e)
        {
            // --atomic: either every disk moved or none did. Check rather than trust, and undo what did happen.
            var warnings = new List<string>();
            var stuck = new List<(HotBackupDisk, string)>();
            IReadOnlyDictionary<string, string?> live;
            try
            {
                live = LibvirtBlockJobs.LiveSources(virsh, plan.Domain);
            }
            catch (VDiskException)
            {
                live = new Dictionary<string, string?>();
            }
            foreach (var disk in plan.Disks)
            {
                if (live.TryGetValue(disk.Target, out var source) && source == disk.OverlayPath)
                {
                    if (Commit(virsh, plan, disk, warnings) is { } error) stuck.Add((disk, error));
                }
                else TryDelete(disk.OverlayPath!);
            }
            if (stuck.Count > 0)
                throw new VDiskException(VDiskErrorKind.LibvirtFailed, plan.Disks[0].ImagePath, StuckMessage(virsh, plan, stuck, e), e);
            throw new VDiskException(VDiskErrorKind.LibvirtFailed, null,
                $"The external snapshot of domain '{plan.Domain}' failed, so nothing was backed up; the domain runs on its images as before. {e.Message}", e);
        }
    }

    private const int CommitAttempts = 3;

    // Commits one disk's overlay into its image and removes the overlay. Returns null when the guest runs on the image
    // again, else what went wrong. A commit refused for a moment (another reader's lock on the image, a job) is retried.
    private static string? Commit(Virsh virsh, HotBackupPlan plan, HotBackupDisk disk, List<string> warnings)
    {
        string? error = null;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                LibvirtBlockJobs.CommitActive(virsh, plan.Domain, disk.Target);
            }
            catch (VDiskException e)
            {
                error = e.Message;
            }
            string? source = null;
            try
            {
                LibvirtBlockJobs.LiveSources(virsh, plan.Domain).TryGetValue(disk.Target, out source);
            }
            catch (VDiskException e)
            {
                error ??= e.Message;
            }
            if (source == disk.ImagePath)
            {
                try
                {
                    File.Delete(disk.OverlayPath!);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    warnings.Add($"Domain '{plan.Domain}' runs disk {disk.Target} on {disk.ImagePath} again, but its backup overlay {disk.OverlayPath} could not be removed ({e.Message}); remove it by hand.");
                }
                return null;
            }
            error ??= $"after the commit the disk runs on {source ?? "nothing"}, not on {disk.ImagePath}";
            if (source != disk.OverlayPath || attempt == CommitAttempts) return error;
            LibvirtBlockJobs.TryAbortJob(virsh, plan.Domain, disk.Target);
            Thread.Sleep(TimeSpan.FromSeconds(attempt));
            error = null;
        }
    }

    // The domain's state after commits failed, and the command that finishes each.
    private static string StuckMessage(Virsh virsh, HotBackupPlan plan, List<(HotBackupDisk Disk, string Error)> stuck, Exception? cause)
    {
        string state;
        try
        {
            state = virsh.State(plan.Domain);
        }
        catch (VDiskException e)
        {
            state = $"unknown ({e.Message})";
        }
        var lines = new List<string>
        {
            (cause is OperationCanceledException ? "The hot backup was cancelled" : cause is not null ? $"The hot backup failed ({cause.Message})" : "The hot backup's commit failed") +
            $", and domain '{plan.Domain}' (now {state}) could not be moved back onto {(stuck.Count == 1 ? "its image" : "its images")}. Nothing is lost: " +
            "each overlay holds every guest write since the snapshot, and its image the content at the snapshot; but the overlay grows until it is committed.",
        };
        foreach (var (disk, error) in stuck)
            lines.Add($"Disk {disk.Target} runs on overlay {disk.OverlayPath} (backed by {disk.ImagePath}); the commit failed: {error.ReplaceLineEndings(" ")} " +
                $"To finish, run: {LibvirtBlockJobs.FinishCommand(plan.Uri, plan.Domain, disk.Target, disk.OverlayPath!)}");
        if (state == "shut off")
            lines.Add("The domain is shut off, so blockcommit cannot run: commit each overlay with 'qemu-img commit OVERLAY', point the disk back at its image (virsh edit), then remove the overlay.");
        return string.Join(Environment.NewLine, lines);
    }

    private static string? WhyNot(DomainXml xml, DiskAttachment disk)
    {
        if (disk.Device != "disk") return $"it is a {disk.Device}";
        if (disk.Path is null) return "it has no source";
        if (disk.ReadOnly) return "it is read-only";
        if (!IsFile(xml, disk)) return "it is not a file (a block device, network or volume source); back it up with the tools of its storage";
        if (FormatProbe.ParseName(disk.Format ?? "raw") is null) return $"its format '{disk.Format}' is not one VDisk reads";
        return null;
    }

    // A file-backed disk: type='file' (DiskAttachment does not keep the type, so the source attribute tells).
    private static bool IsFile(DomainXml xml, DiskAttachment disk) => xml.IsFileDisk(disk.Target);

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
