// What Poolkeeper's identity may do in one resource group: a custom role holding exactly the
// actions it needs there (main.bicep lists them), and the built-in roles it names (e.g. Monitoring
// Reader for the metrics).

targetScope = 'resourceGroup'

@description('Object id of Poolkeeper\'s managed identity.')
param principalId string

@description('Name of the custom role; the resource group and its subscription are added (role names are unique in a tenant, resource group names only in a subscription).')
param roleName string

@description('What the custom role is for.')
param roleDescription string

@description('The custom role\'s actions: exact operations, no wildcards.')
param actions array

@description('Built-in role definition ids to assign as well.')
param builtInRoles array = []

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, roleName)
  properties: {
    roleName: '${roleName} (${resourceGroup().name}, ${subscription().subscriptionId})'
    description: roleDescription
    type: 'CustomRole'
    permissions: [ { actions: actions, notActions: [] } ]
    assignableScopes: [ resourceGroup().id ]
  }
}

resource custom 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, role.id)
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource builtIn 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for id in builtInRoles: {
  name: guid(resourceGroup().id, principalId, id)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', id)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]
