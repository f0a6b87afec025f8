// Poolkeeper in Azure: a Flex Consumption Function App (Python 3.11) with a user-assigned
// managed identity, its Storage account (identity-based, no shared keys) and Application Insights.
// The identity may do exactly what scale, drain, patch and image jobs call in the cluster's node
// resource group (custom role), read the scale sets' metrics, and keep prototype images in the
// gallery resource group; nothing else. Each pool gets metric alert rules for its P1/P2
// conditions that call POST /api/alerts (docs/alerts.md).

targetScope = 'resourceGroup'

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Base name for the resources (lowercase letters and digits).')
@minLength(3)
@maxLength(16)
param name string = 'poolkeeper'

@description('The pools Poolkeeper manages, as JSON (docs/configuration.md): the allow-list.')
param poolsJson string

@description('Resource group holding the node pools\' scale sets (the AKS node resource group).')
param nodeResourceGroup string

@description('API server URL of the AKS cluster (Entra ID integration); see docs/drain.md.')
param kubeServer string

@description('Schedule of the reconcile timer (6-field NCRONTAB, UTC).')
param reconcileSchedule string = '0 */5 * * * *'

@description('Resource group of the Azure Compute Gallery for prototype images (a pool\'s image.gallery, or the default gallery "poolkeeper" in the scale set\'s resource group); docs/images.md.')
param galleryResourceGroup string = nodeResourceGroup

@description('Deploy the P1/P2 metric alert rules of every pool and their action group (docs/alerts.md).')
param deployAlertRules bool = true

var suffix = uniqueString(resourceGroup().id, name)
var storageName = take('${name}${suffix}', 24)
var deploymentContainer = 'app-package'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-id'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:The app reaches its storage over the public endpoint with Entra ID only (shared keys off); a deny-by-default network rule needs VNet integration and private endpoints, which this template does not set up (docs/deploy.md)
  // checkov:skip=CKV_AZURE_206:LRS works in every region; what matters is rebuilt or re-read: counts come from Azure on every reconcile, and lost jobs are resubmitted (docs/deploy.md)
  // checkov:skip=CKV_AZURE_43:The name is computed (take(name + uniqueString, 24)); the name parameter allows 3-16 lowercase letters and digits, so the result is a valid account name
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
}

// Built-in roles the app needs on its own storage account (identity-based AzureWebJobsStorage).
var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner (leases, timer status)
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor (jobs)
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor (ledger, status)
]

resource storageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, identity.id, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${name}-insights'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:A zone outage costs a timer tick, not state: every job is resumable from storage, and zone redundancy is not offered in every region Flex Consumption runs in
  name: '${name}-plan'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Azure Monitor action groups and Alertmanager must reach POST /api/alerts; every route but /api/health needs a function key
  // checkov:skip=CKV_AZURE_17:The callers (Azure Monitor action groups, Alertmanager, operators) authenticate with function keys and present no client certificates
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per trigger; timers and queues lose nothing while an instance starts, and alert senders retry
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check to evict instances; /api/health serves external probes
  name: '${name}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  tags: { 'azd-service-name': 'api' }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        { name: 'POOLKEEPER_POOLS', value: poolsJson }
        { name: 'POOLKEEPER_KUBE_SERVER', value: kubeServer }
        { name: 'POOLKEEPER_SCALE_QUEUE', value: 'scale-jobs' }
        { name: 'POOLKEEPER_DRAIN_QUEUE', value: 'drain-jobs' }
        { name: 'POOLKEEPER_RECONCILE_QUEUE', value: 'reconcile-jobs' }
        { name: 'POOLKEEPER_PATCH_QUEUE', value: 'patch-jobs' }
        { name: 'POOLKEEPER_IMAGE_QUEUE', value: 'image-jobs' }
        { name: 'RECONCILE_SCHEDULE', value: reconcileSchedule }
        { name: 'CAPACITY_SCHEDULE', value: '0 */5 * * * *' }
        { name: 'DOWNSCALE_SCHEDULE', value: '0 0 6 * * MON' }
        { name: 'PATCH_SCHEDULE', value: '0 */15 * * * *' }
        { name: 'IMAGE_SCHEDULE', value: '0 42 0 * * *' }
        { name: 'POOLKEEPER_METRICS_ENDPOINT', value: 'https://${location}.metrics.monitor.azure.com' }
      ]
    }
  }
  dependsOn: [ storageAccess ]
}

// Exactly what the adapters call in the node resource group (tests/unit/test_infra.py maps each
// SDK call to its action). Model writes are checked by ARM against what the model references, so
// the joins and the identity assignment are there too; a network or identity in another resource
// group needs the same few actions there (docs/deploy.md).
var nodePoolActions = [
  'Microsoft.Compute/virtualMachineScaleSets/read'
  'Microsoft.Compute/virtualMachineScaleSets/write' // capacity up, image reference (with If-Match)
  'Microsoft.Compute/virtualMachineScaleSets/delete/action' // DeleteInstances: named, drained nodes
  'Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action' // roll an instance to the model
  'Microsoft.Compute/virtualMachineScaleSets/instanceView/read'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/instanceView/read'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/restart/action' // patch reboots
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimage/action' // repair ladder
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/start/action' // donor back after capture
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/powerOff/action' // donor stopped for its snapshot
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action' // patch, clean-up
  'Microsoft.Compute/locations/operations/read' // long-running operations' status
  'Microsoft.Compute/disks/read' // a donor's OS disk, the snapshot's source
  'Microsoft.Compute/snapshots/read'
  'Microsoft.Compute/snapshots/write'
  'Microsoft.Compute/snapshots/delete'
  'Microsoft.Network/virtualNetworks/subnets/join/action'
  'Microsoft.Network/loadBalancers/backendAddressPools/join/action'
  'Microsoft.Network/networkSecurityGroups/join/action'
  'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' // the kubelet identity
]

// Prototype images: the gallery and definition are created on first use; versions come and go.
var galleryActions = [
  'Microsoft.Compute/galleries/read'
  'Microsoft.Compute/galleries/write'
  'Microsoft.Compute/galleries/images/read'
  'Microsoft.Compute/galleries/images/write'
  'Microsoft.Compute/galleries/images/versions/read'
  'Microsoft.Compute/galleries/images/versions/write'
  'Microsoft.Compute/galleries/images/versions/delete'
  'Microsoft.Compute/locations/operations/read'
]

var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'

module nodeAccess 'modules/access.bicep' = {
  name: 'poolkeeper-node-access'
  scope: resourceGroup(nodeResourceGroup)
  params: {
    principalId: identity.properties.principalId
    roleName: 'Poolkeeper node pools'
    roleDescription: 'Scale, drain, patch and image jobs on the scale sets Poolkeeper manages.'
    actions: nodePoolActions
    builtInRoles: [ monitoringReader ]
  }
}

module galleryAccess 'modules/access.bicep' = {
  name: 'poolkeeper-gallery-access'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    principalId: identity.properties.principalId
    roleName: 'Poolkeeper image gallery'
    roleDescription: 'Prototype images: gallery, image definitions and versions.'
    actions: galleryActions
  }
}

// The capacity defaults (shared/config/capacity.py CapacitySettings; tests/unit/test_alert_rules.py holds
// them equal); a pool's own `capacity` section overrides them, as it does in the product.
var capacityDefaults = { p1_cpu: 95, p1_memory: 85, p2_cpu: 75, p2_memory: 75 }
var pools = json(poolsJson).pools

// Azure Monitor cannot sign a webhook: the function key in the URL is its credential.
resource alertsGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (deployAlertRules) {
  name: '${name}-alerts'
  location: 'Global'
  properties: {
    groupShortName: 'poolkeeper'
    enabled: true
    webhookReceivers: [
      {
        name: 'poolkeeper'
        serviceUri: 'https://${app.properties.defaultHostName}/api/alerts?code=${listKeys('${app.id}/host/default', '2024-04-01').functionKeys.default}'
        useCommonAlertSchema: true
        useAadAuth: false
      }
    ]
  }
}

module poolAlerts 'modules/pool-alerts.bicep' = [for pool in (deployAlertRules ? pools : []): {
  name: 'poolkeeper-alerts-${pool.name}'
  params: {
    pool: pool.name
    vmssId: pool.vmss_id
    thresholds: union(capacityDefaults, contains(pool, 'capacity') ? pool.capacity : {})
    actionGroupId: alertsGroup.id
  }
}]

output appName string = app.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
