// The disk rules libvirt's QEMU driver (libvirt 9, qemu_validate.c / domain_conf.c) applies when a domain is defined,
// which the schema (virt-xml-validate) and the test:///default driver do not: checked before VDisk defines anything,
// so a refused edit is reported with the rule's name instead of leaving half-applied changes. The messages quote
// libvirt's own wording. See libvirt formatdomain "Hard drives, floppy disks, CDROMs" (driver io, iothread, queues).
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Libvirt;

/// <summary>A rule of libvirt's QEMU driver about disks.</summary>
public enum DomainRule
{
    /// <summary>io='native' needs cache='none' or 'directsync' (libvirt: "io='native' needs either no disk cache or directsync cache mode").</summary>
    NativeIoNeedsDirectCache,
    /// <summary>A disk's driver iothread is only for virtio-blk disks (libvirt: "IOThreads not available for bus ...").</summary>
    IoThreadNeedsVirtioBlk,
    /// <summary>A disk's iothread must be one the domain defines (libvirt: "Disk iothread 'N' not defined in iothreadid").</summary>
    IoThreadNotDefined,
    /// <summary>queues is only for virtio-blk disks (libvirt: "queues attribute in disk driver element is only supported by virtio-blk").</summary>
    QueuesNeedVirtioBlk,
    /// <summary>Each disk needs its own target name (libvirt: "target 'X' duplicated for disk sources").</summary>
    DuplicateTarget,
    /// <summary>q35 machines have no IDE controller (libvirt: "IDE controllers are unsupported for this QEMU binary or machine type").</summary>
    IdeOnQ35,
}

/// <summary>One broken rule: which, the disk it concerns, and what to do.</summary>
public sealed record DomainRuleViolation(DomainRule Rule, string Target, string Message);

/// <summary>Checks a domain's disks against the QEMU driver's rules.</summary>
public static class DomainRules
{
    /// <summary>Every rule <paramref name="domain"/> breaks, disk by disk in document order.</summary>
    public static IReadOnlyList<DomainRuleViolation> Check(DomainXml domain)
    {
        var found = new List<DomainRuleViolation>();
        var seen = new HashSet<string>();
        foreach (var disk in domain.Disks)
        {
            if (!seen.Add(disk.Target))
                found.Add(new(DomainRule.DuplicateTarget, disk.Target, $"target '{disk.Target}' is used by more than one disk; each disk needs its own target name."));
            found.AddRange(CheckDisk(disk, domain.IoThreadIds, domain.IsQ35 ? domain.Machine : null));
        }
        return found;
    }

    /// <summary>
    /// The rules one disk breaks on its own: with <paramref name="ioThreadIds"/> null the iothread is not looked up,
    /// and <paramref name="q35Machine"/> names the machine when it is a q35 one.
    /// </summary>
    public static IEnumerable<DomainRuleViolation> CheckDisk(DiskAttachment disk, IReadOnlyList<int>? ioThreadIds, string? q35Machine)
    {
        string t = disk.Target;
        if (disk.IoMode == DiskIoMode.Native && disk.CacheMode is not (CacheMode.None or CacheMode.DirectSync))
            yield return new(DomainRule.NativeIoNeedsDirectCache, t,
                $"disk {t}: io='native' needs cache='none' or 'directsync' (it has {(disk.CacheMode is { } c ? $"cache='{DiskAttachment.CacheName(c)}'" : "no cache mode, i.e. writeback")}); " +
                "choose -CacheMode None or DirectSync, or -IoMode Threads.");
        if (disk.IoThread is { } thread)
        {
            if (disk.Bus != DiskBus.VirtioBlk)
                yield return new(DomainRule.IoThreadNeedsVirtioBlk, t,
                    $"disk {t}: an iothread on the disk is only available for virtio-blk (bus='virtio'), not for bus {disk.Bus}; a virtio-scsi disk runs in its controller's iothread.");
            else if (ioThreadIds is not null && !ioThreadIds.Contains(thread))
                yield return new(DomainRule.IoThreadNotDefined, t,
                    $"disk {t}: iothread {thread} is not defined by the domain (it defines {(ioThreadIds.Count == 0 ? "none" : string.Join(", ", ioThreadIds))}); add it to <iothreadids> or <iothreads>.");
        }
        if (disk.Queues is not null && disk.Bus != DiskBus.VirtioBlk)
            yield return new(DomainRule.QueuesNeedVirtioBlk, t, $"disk {t}: queues is only supported by virtio-blk (bus='virtio'), not by bus {disk.Bus}.");
        if (disk.Bus == DiskBus.Ide && q35Machine is not null)
            yield return new(DomainRule.IdeOnQ35, t, $"disk {t}: machine '{q35Machine}' (q35) has no IDE controller; use bus='sata'.");
    }

    /// <summary>
    /// Throws a DomainRuleViolated error naming every rule <paramref name="domain"/> breaks that concerns one of
    /// <paramref name="targets"/> (all disks when null), so an edit is refused before it is saved or defined.
    /// </summary>
    public static void Ensure(DomainXml domain, IReadOnlyCollection<string>? targets = null)
    {
        var broken = Check(domain).Where(v => targets is null || targets.Contains(v.Target)).ToList();
        if (broken.Count == 0) return;
        throw new VDiskException(VDiskErrorKind.DomainRuleViolated, domain.Source,
            $"{domain.Source ?? domain.Name}: libvirt's QEMU driver would refuse this: " +
            string.Join(" ", broken.Select(v => $"[{v.Rule}] {v.Message}")));
    }
}
